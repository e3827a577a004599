//! Target `chunk`: [`zarr::decode_chunk`], a whole codec chain for one chunk (zarr v3
//! core spec §"Codecs"; sharding codec spec §"Binary shard format").
//!
//! Input layout: one byte choosing the chain (modulo the number of chains), then the
//! stored chunk. The chains are read from `zarr.json` documents in the metadata corpus:
//! ten of fixtures in `tests/data/zarr` that zarr-python wrote (zstd, gzip with `crc32c`,
//! blosc with lz4 byte shuffle and zstd bit shuffle, transpose with big-endian bytes,
//! and sharding with the index at the end or the start, a big-endian index, an outer
//! zstd + `crc32c`, nested shards) and two built ones (shards compressed whole by
//! blosc; zstd under gzip), whose decoders of unknown output size run under the stage
//! cap that guards against forged sizes; then from `.zarray` documents in the
//! `metadata_v2` corpus, zarr v2 fixtures with numcodecs' framings: `lz4`, `zlib`, and
//! Fortran order with big-endian bytes under blosc-zstd and under `lz4`.
//!
//! Properties: decoding returns `Ok` or `Err`; a decoded chunk writes every byte of the
//! output (two runs over differently poisoned buffers agree).
//!
//! Nearly every mutation of a shard index, or of anything under a `crc32c` codec, fails
//! its checksum, and nearly every insertion or deletion breaks a blosc frame's total
//! size. So an input that fails is decoded a second time with those integrity fields
//! repaired ([`repair`]), and the forged offsets and lengths behind them reach the
//! shard and blosc decoders.

use std::sync::LazyLock;

use zarr::{
    ArrayMetadata, ArrayToBytes, BytesToBytes, ChunkLocation, ChunkRepr, CodecChain, ShardIndex,
    ShardingCodec,
};

use super::output::poison;

/// The fixtures whose chains are fuzzed, in selector order.
pub const CHAINS: [(&str, &[u8]); 12] = [
    ("zstd_u16", include_bytes!("../../corpus/metadata/zstd_u16.json")),
    ("gzip_crc32c_u8", include_bytes!("../../corpus/metadata/gzip_crc32c_u8.json")),
    ("blosc_lz4_shuffle_i32", include_bytes!("../../corpus/metadata/blosc_lz4_shuffle_i32.json")),
    (
        "blosc_zstd_bitshuffle_u16",
        include_bytes!("../../corpus/metadata/blosc_zstd_bitshuffle_u16.json"),
    ),
    ("transpose_be_i32", include_bytes!("../../corpus/metadata/transpose_be_i32.json")),
    ("shard_end_u16_zstd", include_bytes!("../../corpus/metadata/shard_end_u16_zstd.json")),
    ("shard_start_f32_blosc", include_bytes!("../../corpus/metadata/shard_start_f32_blosc.json")),
    (
        "shard_outer_zstd_crc_i16",
        include_bytes!("../../corpus/metadata/shard_outer_zstd_crc_i16.json"),
    ),
    ("shard_nested_u16", include_bytes!("../../corpus/metadata/shard_nested_u16.json")),
    ("shard_index_be_u32", include_bytes!("../../corpus/metadata/shard_index_be_u32.json")),
    (
        "built_shard_outer_blosc_u16",
        include_bytes!("../../corpus/metadata/built_shard_outer_blosc_u16.json"),
    ),
    ("built_zstd_gzip_u8", include_bytes!("../../corpus/metadata/built_zstd_gzip_u8.json")),
];

/// The zarr v2 fixtures whose chains are fuzzed, after [`CHAINS`] in selector order.
pub const V2_CHAINS: [(&str, &[u8]); 4] = [
    ("v2_lz4_f32", include_bytes!("../../corpus/metadata_v2/v2_lz4_f32.zarray")),
    ("v2_zlib_u32", include_bytes!("../../corpus/metadata_v2/v2_zlib_u32.zarray")),
    (
        "v2_blosc_zstd_f_be_i16",
        include_bytes!("../../corpus/metadata_v2/v2_blosc_zstd_f_be_i16.zarray"),
    ),
    ("v2_slash_f_lz4_u16", include_bytes!("../../corpus/metadata_v2/v2_slash_f_lz4_u16.zarray")),
];

/// The fixture names of every chain, in selector order.
pub fn chain_names() -> impl Iterator<Item = &'static str> {
    CHAINS.iter().chain(&V2_CHAINS).map(|(name, _)| *name)
}

/// The parsed chains and chunk representations, in selector order.
pub(crate) static PARSED: LazyLock<Vec<(CodecChain, ChunkRepr)>> = LazyLock::new(|| {
    // The documents are committed seeds that zarr-python wrote; a unit test parses every
    // one.
    let v3 = CHAINS.iter().map(|(name, json)| {
        ArrayMetadata::parse(json).unwrap_or_else(|e| panic!("corpus/metadata/{name}.json: {e}"))
    });
    let v2 = V2_CHAINS.iter().map(|(name, zarray)| {
        ArrayMetadata::parse_v2(zarray, None)
            .unwrap_or_else(|e| panic!("corpus/metadata_v2/{name}.zarray: {e}"))
    });
    v3.chain(v2)
        .map(|m| {
            let repr = ChunkRepr {
                shape: m.chunk_shape.clone(),
                data_type: m.data_type,
                fill_value: m.fill_value,
            };
            (m.codecs, repr)
        })
        .collect()
});

/// Decodes the chunk in `data` through the chain its first byte selects (and, if that
/// fails, a copy with its checksums and blosc sizes repaired) and checks what is
/// accepted.
///
/// # Panics
/// When a property fails (that is the finding).
pub fn run_one(data: &[u8]) {
    let Some((&selector, stored)) = data.split_first() else { return };
    let (chain, repr) = &PARSED[usize::from(selector) % PARSED.len()];
    if !check(chain, repr, stored) {
        let mut repaired = stored.to_vec();
        repair(chain, &chain.inner_shape(&repr.shape), &mut repaired);
        if repaired != stored {
            check(chain, repr, &repaired);
        }
    }
}

/// Decodes `stored` and, if that succeeds, checks that every output byte was written.
/// Returns whether it decoded.
fn check(chain: &CodecChain, repr: &ChunkRepr, stored: &[u8]) -> bool {
    // The fixed chunk shapes decode to at most 16 KiB, so this cannot fail.
    let Ok(n) = repr.num_bytes() else { return false };
    let mut first = vec![0u8; n];
    poison(&mut first, 0xA5);
    if zarr::decode_chunk(chain, repr, stored, &mut first).is_err() {
        return false;
    }
    let mut second = vec![0u8; n];
    poison(&mut second, 0x5A);
    let again = zarr::decode_chunk(chain, repr, stored, &mut second);
    assert_eq!(again, Ok(()), "a chunk that decoded once fails the second time");
    assert!(first == second, "decode_chunk left bytes of the output unwritten");
    true
}

/// Rewrites, in place, the integrity fields of `stored` (a chunk of `shape` as the
/// array→bytes codec sees it) that `chain` reads without decompressing: trailing
/// `crc32c` checksums, a blosc frame's total size, a shard index's checksum, and the
/// same inside each inner chunk the index points to.
pub(crate) fn repair(chain: &CodecChain, shape: &[u64], stored: &mut [u8]) {
    // Peel the codecs from the outermost (listed last) in, noting where each crc32c
    // sits; the checksums are written last, over bytes already repaired.
    let mut crc_at = Vec::new();
    let mut end = stored.len();
    let mut opaque = false;
    for codec in chain.bytes_to_bytes.iter().rev() {
        match codec {
            BytesToBytes::Crc32c => {
                let Some(split) = end.checked_sub(4) else { return };
                crc_at.push(split);
                end = split;
            }
            BytesToBytes::Blosc { .. } => {
                if let (Some(field), Ok(len)) = (stored.get_mut(12..16), u32::try_from(end)) {
                    field.copy_from_slice(&len.to_le_bytes());
                }
                opaque = true;
                break;
            }
            // What is inside a zstd or gzip stream cannot be reached without decoding.
            BytesToBytes::Zstd { .. }
            | BytesToBytes::Gzip { .. }
            | BytesToBytes::Zlib { .. }
            | BytesToBytes::Lz4 { .. } => {
                opaque = true;
                break;
            }
        }
    }
    if !opaque && let ArrayToBytes::Sharding(s) = &chain.array_to_bytes {
        repair_shard(s, shape, &mut stored[..end]);
    }
    for split in crc_at.into_iter().rev() {
        let crc = crc32c::crc32c(&stored[..split]);
        stored[split..split + 4].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Repairs a shard's index checksum, then each inner chunk the index points to.
fn repair_shard(s: &ShardingCodec, shape: &[u64], shard: &mut [u8]) {
    if s.chunk_shape.len() != shape.len() || s.chunk_shape.contains(&0) {
        return;
    }
    let n: u64 = shape.iter().zip(&s.chunk_shape).map(|(n, c)| n / c).product();
    let Ok(range) = ShardIndex::byte_range(s, n, shard.len() as u64) else { return };
    // byte_range returned a range inside the shard; with crc32c it is at least 4 bytes.
    let (start, stop) = (range.start as usize, range.end as usize);
    if s.index_codecs.bytes_to_bytes == [BytesToBytes::Crc32c] {
        let crc = crc32c::crc32c(&shard[start..stop - 4]);
        shard[stop - 4..stop].copy_from_slice(&crc.to_le_bytes());
    }
    let Ok(index) = ShardIndex::decode(s, n, shard.len() as u64, &shard[start..stop]) else {
        return;
    };
    let inner_shape = s.codecs.inner_shape(&s.chunk_shape);
    for e in index.entries() {
        if let ChunkLocation::Range { offset, nbytes } = *e {
            // decode accepted the entry, so it lies inside the shard.
            let inner = &mut shard[offset as usize..(offset + nbytes) as usize];
            repair(&s.codecs, &inner_shape, inner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chain_parses_and_repair_restores_corrupted_checksums() {
        assert_eq!(PARSED.len(), CHAINS.len() + V2_CHAINS.len());
        assert_eq!(chain_names().count(), PARSED.len());
        let dir = crate::campaign::corpus_root().join("chunk");
        for (name, bytes) in crate::campaign::read_corpus(&dir).unwrap() {
            let (chain, repr) = &PARSED[usize::from(bytes[0]) % PARSED.len()];
            let stored = &bytes[1..];
            let mut out = vec![0u8; repr.num_bytes().unwrap()];
            assert_eq!(zarr::decode_chunk(chain, repr, stored, &mut out), Ok(()), "{name}");
            // Repairing a valid chunk changes nothing.
            let mut same = stored.to_vec();
            repair(chain, &chain.inner_shape(&repr.shape), &mut same);
            assert!(same == stored, "{name}: repair changed a valid chunk");
            // Damage to the last 4 bytes (a crc32c, or a shard index's) is repaired.
            let checksummed = matches!(chain.bytes_to_bytes.last(), Some(BytesToBytes::Crc32c))
                || matches!(&chain.array_to_bytes, ArrayToBytes::Sharding(s)
                    if chain.bytes_to_bytes.is_empty()
                        && s.index_location == zarr::IndexLocation::End);
            if checksummed {
                let mut bad = stored.to_vec();
                let last = bad.len() - 1;
                bad[last] ^= 0x40;
                assert!(zarr::decode_chunk(chain, repr, &bad, &mut out).is_err(), "{name}");
                repair(chain, &chain.inner_shape(&repr.shape), &mut bad);
                assert!(bad == stored, "{name}: checksum not repaired");
            }
        }
    }
}
