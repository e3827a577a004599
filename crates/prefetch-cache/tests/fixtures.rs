//! Small zarr arrays written by hand (metadata via the zarr crate's builders, shards via
//! `ShardIndex::encode` and `blosc::encode`) into a tempdir.

use std::path::Path;
use std::sync::Arc;

use store::{FsStore, FsStoreConfig, Store};
use zarr::blosc::{self, Compressor, EncodeOptions, Shuffle};
use zarr::{
    ArrayMetadata, ArrayToBytes, BytesToBytes, ChunkLocation, CodecChain, DataType, FillValue,
    ShardIndex,
};

pub fn fs_store(root: &Path) -> Arc<dyn Store> {
    Arc::new(FsStore::new(root, FsStoreConfig { io_threads: 2, ..Default::default() }).unwrap())
}

/// uint8, shape 8×8, shards 4×4 of 2×2 inner chunks (4 per shard), raw inner chunks.
pub fn raw_sharded_meta() -> ArrayMetadata {
    ArrayMetadata::sharded(
        vec![8, 8],
        vec![4, 4],
        vec![2, 2],
        DataType::UInt8,
        CodecChain::bytes(None),
        FillValue::zero(DataType::UInt8),
    )
    .unwrap()
}

/// As [`raw_sharded_meta`] but the inner chunks are blosc frames.
pub fn blosc_sharded_meta() -> ArrayMetadata {
    let inner = CodecChain {
        array_to_array: vec![],
        array_to_bytes: ArrayToBytes::Bytes { endian: None },
        bytes_to_bytes: vec![BytesToBytes::Blosc {
            cname: zarr::codec::BloscCname::Zstd,
            clevel: 5,
            shuffle: zarr::codec::BloscShuffle::Shuffle,
            typesize: Some(1),
            blocksize: 0,
        }],
    };
    ArrayMetadata::sharded(
        vec![8, 8],
        vec![4, 4],
        vec![2, 2],
        DataType::UInt8,
        inner,
        FillValue::zero(DataType::UInt8),
    )
    .unwrap()
}

/// uint8 8×8 in unsharded 4×4 chunks.
pub fn unsharded_meta() -> ArrayMetadata {
    ArrayMetadata::chunked(
        vec![8, 8],
        vec![4, 4],
        DataType::UInt8,
        CodecChain::bytes(None),
        FillValue::zero(DataType::UInt8),
    )
    .unwrap()
}

/// Writes the array's metadata documents (`zarr.json`, or `.zarray` and `.zattrs`).
pub fn write_meta(root: &Path, uri: &str, meta: &ArrayMetadata) {
    std::fs::create_dir_all(root.join(uri)).unwrap();
    for (key, text) in meta.documents().unwrap() {
        std::fs::write(root.join(uri).join(key), text).unwrap();
    }
}

pub fn sharding(meta: &ArrayMetadata) -> &zarr::ShardingCodec {
    match &meta.codecs.array_to_bytes {
        ArrayToBytes::Sharding(s) => s,
        ArrayToBytes::Bytes { .. } => panic!("fixture is not sharded"),
    }
}

/// Encodes a shard from per-chunk stored bytes (`None` = empty entry) with the index at
/// the end; returns the file bytes.
pub fn shard_bytes(meta: &ArrayMetadata, chunks: &[Option<Vec<u8>>]) -> Vec<u8> {
    let mut data = Vec::new();
    let mut entries = Vec::new();
    for c in chunks {
        match c {
            None => entries.push(ChunkLocation::Empty),
            Some(b) => {
                entries.push(ChunkLocation::Range {
                    offset: data.len() as u64,
                    nbytes: b.len() as u64,
                });
                data.extend_from_slice(b);
            }
        }
    }
    data.extend(ShardIndex::encode(sharding(meta), &entries).unwrap());
    data
}

pub fn write_file(root: &Path, key: &str, bytes: &[u8]) {
    let p = root.join(key);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

pub fn blosc_chunk(compressor: Compressor) -> Vec<u8> {
    let opts = EncodeOptions {
        compressor,
        clevel: 5,
        shuffle: Shuffle::Byte,
        typesize: 1,
        blocksize: 0,
        split: false,
    };
    blosc::encode(&[1, 2, 3, 4], &opts).unwrap()
}
