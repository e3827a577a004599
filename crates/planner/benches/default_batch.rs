//! The `default` scenario's batch for the planner: 128 random 128³ crops over 8 arrays of
//! 512³ u16, shards 256×256×512, chunks 32×64×64, with synthetic shard indexes. Shared
//! by the bench (benches/plan.rs) and the golden test (tests/golden.rs), which pins the
//! plan of exactly this batch.

use std::sync::Arc;

use planner::{ArrayEntry, ArrayId, SampleInput, ShardState};
use splitmix::splitmix64;
use zarr::{
    Aabb, ArrayMetadata, ArrayToBytes, BytesToBytes, ChunkKeyEncoding, ChunkLocation, CodecChain,
    DataType, Endian, FillValue, IndexLocation, Separator, ShardIndex, ShardingCodec,
};

const SHAPE: [u64; 3] = [512, 512, 512];
const SHARD: [u64; 3] = [256, 256, 512];
const CHUNK: [u64; 3] = [32, 64, 64];
const CHUNKS_PER_SHARD: u64 = 8 * 4 * 8;
const CROP: u64 = 128;

fn meta() -> Arc<ArrayMetadata> {
    let bytes = |b2b| CodecChain {
        array_to_array: vec![],
        array_to_bytes: ArrayToBytes::Bytes { endian: Some(Endian::Little) },
        bytes_to_bytes: b2b,
    };
    Arc::new(ArrayMetadata {
        zarr_format: zarr::ZarrFormat::V3,
        shape: SHAPE.to_vec(),
        data_type: DataType::UInt16,
        chunk_shape: SHARD.to_vec(),
        chunk_key_encoding: ChunkKeyEncoding::Default { separator: Separator::Slash },
        fill_value: FillValue::zero(DataType::UInt16),
        codecs: CodecChain {
            array_to_array: vec![],
            array_to_bytes: ArrayToBytes::Sharding(Box::new(ShardingCodec {
                chunk_shape: CHUNK.to_vec(),
                codecs: bytes(vec![BytesToBytes::Zstd { level: 3, checksum: false }]),
                index_codecs: bytes(vec![BytesToBytes::Crc32c]),
                index_location: IndexLocation::End,
            })),
            bytes_to_bytes: vec![],
        },
        dimension_names: None,
        attributes: Default::default(),
    })
}

/// A shard of chunks stored back to back in index order, about 256 KiB / 1.24 each.
fn index(seed: u64) -> Arc<ShardIndex> {
    let mut offset = 0;
    let entries = (0..CHUNKS_PER_SHARD)
        .map(|i| {
            let nbytes = 200_000 + splitmix64(seed ^ i, 0) % 24_000;
            let e = ChunkLocation::Range { offset, nbytes };
            offset += nbytes;
            e
        })
        .collect();
    Arc::new(ShardIndex::from_entries(entries))
}

/// The batch: arrays and samples, ready for `planner::plan`.
pub fn batch() -> (Vec<ArrayEntry>, Vec<SampleInput>) {
    let m = meta();
    let arrays: Vec<ArrayEntry> = (0..8)
        .map(|a| ArrayEntry::new(format!("/data/default/a{a}.zarr"), m.clone()).unwrap())
        .collect();
    // One index per (array, shard), shared by every sample, as the metadata cache does.
    let indexes: Vec<Vec<Arc<ShardIndex>>> =
        (0..8u64).map(|a| (0..4u64).map(|s| index(a * 16 + s)).collect()).collect();
    let samples = (0..128u64)
        .map(|s| {
            let a = (splitmix64(s, 0) % 8) as usize;
            let lo: Vec<u64> = (0..3)
                .map(|ax| splitmix64(s * 3 + ax + 1000, 0) % (SHAPE[ax as usize] - CROP + 1))
                .collect();
            let hi = lo.iter().map(|l| l + CROP).collect();
            let aabb = Aabb::new(lo, hi).unwrap();
            let hits = arrays[a].geometry.intersect(&aabb).unwrap();
            let shards = hits
                .iter()
                .map(|h| {
                    ShardState::Present(indexes[a][(h.shard[0] * 2 + h.shard[1]) as usize].clone())
                })
                .collect();
            SampleInput { array: ArrayId(a as u32), aabb, shards }
        })
        .collect();
    (arrays, samples)
}
