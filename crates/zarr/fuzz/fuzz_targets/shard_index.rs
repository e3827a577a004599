//! Fuzz target: `ShardIndex::decode` returns `Ok` or `Err` for any bytes and any index
//! encoding, and every entry it accepts lies inside the shard.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zarr::{
    ArrayToBytes, BytesToBytes, ChunkLocation, CodecChain, Endian, IndexLocation, ShardIndex,
    ShardingCodec,
};

fuzz_target!(|data: &[u8]| {
    // Header: flags byte, chunk count byte, 8-byte shard length; the rest is the index.
    let Some((&[flags, n, ref len @ ..], index)) = data.split_first_chunk::<10>() else {
        return;
    };
    let shard_len = u64::from_le_bytes(*len);
    let mut codec = ShardingCodec::new(vec![1], CodecChain::bytes(None));
    codec.index_location = if flags & 1 == 0 { IndexLocation::End } else { IndexLocation::Start };
    codec.index_codecs = CodecChain {
        array_to_array: vec![],
        array_to_bytes: ArrayToBytes::Bytes {
            endian: Some(if flags & 2 == 0 { Endian::Little } else { Endian::Big }),
        },
        bytes_to_bytes: if flags & 4 == 0 { vec![] } else { vec![BytesToBytes::Crc32c] },
    };
    if let Ok(idx) = ShardIndex::decode(&codec, u64::from(n), shard_len, index) {
        for e in idx.entries() {
            if let ChunkLocation::Range { offset, nbytes } = *e {
                assert!(offset.checked_add(nbytes).is_some_and(|end| end <= shard_len));
            }
        }
    }
});
