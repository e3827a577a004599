//! Target `shard_index`: [`zarr::ShardIndex::decode`] (sharding codec spec §"Binary shard
//! format").
//!
//! Input layout (the cargo-fuzz target's): a flags byte (bit 0: index at the start, bit
//! 1: big-endian, bit 2: `crc32c`), the inner chunk count as one byte, the shard length
//! as a little-endian u64, then the index bytes.
//!
//! Properties: decoding returns `Ok` or `Err`; an accepted index has one entry per chunk,
//! every stored entry lies inside the shard and outside the index, and it encodes back
//! to the same bytes.
//!
//! Nearly every mutation of an index with `crc32c` fails the checksum, so such an input
//! is decoded a second time with the checksum repaired, and the forged entries behind
//! it reach the range checks.

use zarr::{
    ArrayToBytes, BytesToBytes, ChunkLocation, CodecChain, Endian, IndexLocation, ShardIndex,
    ShardingCodec,
};

/// The sharding codec the flags byte describes.
pub fn codec(flags: u8) -> ShardingCodec {
    let mut codec = ShardingCodec::new(vec![1], CodecChain::bytes(None));
    codec.index_location = if flags & 1 == 0 { IndexLocation::End } else { IndexLocation::Start };
    codec.index_codecs = CodecChain {
        array_to_array: vec![],
        array_to_bytes: ArrayToBytes::Bytes {
            endian: Some(if flags & 2 == 0 { Endian::Little } else { Endian::Big }),
        },
        bytes_to_bytes: if flags & 4 == 0 { vec![] } else { vec![BytesToBytes::Crc32c] },
    };
    codec
}

/// Decodes the index in `data` (and, if its checksum fails, a copy with the checksum
/// repaired) and checks what is accepted.
///
/// # Panics
/// When a property fails (that is the finding).
pub fn run_one(data: &[u8]) {
    let Some((&[flags, n, ref len @ ..], index)) = data.split_first_chunk::<10>() else {
        return;
    };
    let shard_len = u64::from_le_bytes(*len);
    let n = u64::from(n);
    let codec = codec(flags);
    let range = ShardIndex::byte_range(&codec, n, shard_len);
    if let Ok(r) = &range {
        assert!(r.start <= r.end && r.end <= shard_len, "index range {r:?} outside the shard");
    }
    match ShardIndex::decode(&codec, n, shard_len, index) {
        Err(zarr::Error::IndexChecksum { .. }) => {
            let mut repaired = index.to_vec();
            let split = index.len() - 4;
            let crc = crc32c::crc32c(&index[..split]);
            repaired[split..].copy_from_slice(&crc.to_le_bytes());
            let decoded = ShardIndex::decode(&codec, n, shard_len, &repaired);
            assert!(
                !matches!(decoded, Err(zarr::Error::IndexChecksum { .. })),
                "a repaired checksum still fails"
            );
            if let Ok(idx) = decoded {
                check(&codec, n, shard_len, &repaired, &idx);
            }
        }
        Err(_) => {}
        Ok(idx) => check(&codec, n, shard_len, index, &idx),
    }
}

fn check(codec: &ShardingCodec, n: u64, shard_len: u64, index: &[u8], idx: &ShardIndex) {
    let Ok(r) = ShardIndex::byte_range(codec, n, shard_len) else {
        panic!("decode accepted an index that byte_range rejects");
    };
    assert_eq!(idx.len() as u64, n);
    for e in idx.entries() {
        if let ChunkLocation::Range { offset, nbytes } = *e {
            let end = offset.checked_add(nbytes);
            assert!(
                end.is_some_and(|end| end <= shard_len),
                "entry {offset}+{nbytes} past the shard's {shard_len} bytes"
            );
            assert!(
                end.is_some_and(|end| end <= r.start || offset >= r.end),
                "entry {offset}+{nbytes} overlaps the index at {r:?}"
            );
        }
    }
    assert_eq!(ShardIndex::encode(codec, idx.entries()).as_deref(), Ok(index));
}
