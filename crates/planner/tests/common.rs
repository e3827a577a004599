//! Builders shared by the tests: array metadata, shard states and synthetic indexes.

use std::sync::Arc;

use planner::{ArrayEntry, SampleInput, ShardState};
use splitmix::splitmix64;
use zarr::{
    Aabb, ArrayMetadata, ArrayToBytes, BytesToBytes, ChunkKeyEncoding, ChunkLocation, CodecChain,
    DataType, Endian, FillValue, IndexLocation, Separator, ShardIndex, ShardingCodec,
};

fn bytes_chain(zstd: bool) -> CodecChain {
    CodecChain {
        array_to_array: vec![],
        array_to_bytes: ArrayToBytes::Bytes { endian: Some(Endian::Little) },
        bytes_to_bytes: if zstd {
            vec![BytesToBytes::Zstd { level: 3, checksum: false }]
        } else {
            vec![]
        },
    }
}

/// Metadata of an array; `chunk` is `Some(inner)` for a sharded array whose shards are
/// `grid`, `None` for an unsharded one whose chunks are `grid`.
pub fn meta(
    shape: &[u64],
    grid: &[u64],
    chunk: Option<&[u64]>,
    dtype: DataType,
    fill: FillValue,
) -> Arc<ArrayMetadata> {
    let codecs = match chunk {
        Some(inner) => CodecChain {
            array_to_array: vec![],
            array_to_bytes: ArrayToBytes::Sharding(Box::new(ShardingCodec {
                chunk_shape: inner.to_vec(),
                codecs: bytes_chain(true),
                index_codecs: CodecChain {
                    array_to_array: vec![],
                    array_to_bytes: ArrayToBytes::Bytes { endian: Some(Endian::Little) },
                    bytes_to_bytes: vec![BytesToBytes::Crc32c],
                },
                index_location: IndexLocation::End,
            })),
            bytes_to_bytes: vec![],
        },
        None => bytes_chain(true),
    };
    Arc::new(ArrayMetadata {
        zarr_format: zarr::ZarrFormat::V3,
        shape: shape.to_vec(),
        data_type: dtype,
        chunk_shape: grid.to_vec(),
        chunk_key_encoding: ChunkKeyEncoding::Default { separator: Separator::Slash },
        fill_value: fill,
        codecs,
        dimension_names: None,
        attributes: Default::default(),
    })
}

/// An array entry with a zero fill value.
pub fn entry(
    uri: &str,
    shape: &[u64],
    grid: &[u64],
    chunk: Option<&[u64]>,
    dtype: DataType,
) -> ArrayEntry {
    ArrayEntry::new(uri, meta(shape, grid, chunk, dtype, FillValue::zero(dtype))).unwrap()
}

/// A sample over `array` with one state per touched shard from `state(shard coords)`.
pub fn sample(
    arrays: &[ArrayEntry],
    array: u32,
    lo: &[u64],
    hi: &[u64],
    mut state: impl FnMut(&[u64]) -> ShardState,
) -> SampleInput {
    let aabb = Aabb::new(lo.to_vec(), hi.to_vec()).unwrap();
    let hits = arrays[array as usize].geometry.intersect(&aabb).unwrap();
    let shards = hits.iter().map(|h| state(&h.shard)).collect();
    SampleInput { array: planner::ArrayId(array), aabb, shards }
}

/// A shard index whose chunks are stored back to back, `size(i)` bytes each (`None` is
/// an empty entry), in index order.
pub fn packed_index(n: u64, mut size: impl FnMut(u64) -> Option<u64>) -> Arc<ShardIndex> {
    let mut offset = 0;
    let entries = (0..n)
        .map(|i| match size(i) {
            None => ChunkLocation::Empty,
            Some(nbytes) => {
                let e = ChunkLocation::Range { offset, nbytes };
                offset += nbytes;
                e
            }
        })
        .collect();
    Arc::new(ShardIndex::from_entries(entries))
}

/// Hash of a seed and coordinates, folded with splitmix64's one-shot hash.
pub fn mix_coords(seed: u64, coords: &[u64]) -> u64 {
    coords.iter().fold(splitmix64(seed, 0), |h, &c| splitmix64(h ^ c, 0))
}
