//! Which chunks the GPU decodes: the route of each array's codec chain, and the share
//! of GPU-decodable chunks the CPU takes instead.

/// How the chunks of an array can be decoded on the GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    /// `bytes` (native order) then `zstd`.
    Zstd,
    /// `bytes` (native order) then `blosc` with the zstd compressor.
    BloscZstd,
    /// Anything else: CPU decode, upload of the decoded bytes.
    Cpu,
}

/// The GPU route of a chunk codec chain.
pub(super) fn route(chain: &zarr::CodecChain) -> Route {
    use zarr::codec::{ArrayToBytes, BloscCname, BytesToBytes, Endian};
    if !chain.array_to_array.is_empty() {
        return Route::Cpu;
    }
    match chain.array_to_bytes {
        ArrayToBytes::Bytes { endian: None } => {}
        ArrayToBytes::Bytes { endian: Some(e) } if e == Endian::NATIVE => {}
        _ => return Route::Cpu,
    }
    match chain.bytes_to_bytes.as_slice() {
        [BytesToBytes::Zstd { .. }] => Route::Zstd,
        [BytesToBytes::Blosc { cname: BloscCname::Zstd, .. }] => Route::BloscZstd,
        _ => Route::Cpu,
    }
}

/// The CPU's share of GPU-decodable chunks, per mille: `DAMACY_CPU_SHARE`, at most 1000,
/// default 0.
pub(super) fn cpu_share_from_env() -> u32 {
    let fixed_share = std::env::var("DAMACY_CPU_SHARE")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .map(|v| v.min(1000));
    fixed_share.unwrap_or(0)
}

/// Whether wave-local chunk `li` goes to the CPU under a share of `per_mille` (a fixed
/// scatter of the indices, so the CPU's chunks spread over the wave's files).
pub(super) fn cpu_takes(per_mille: u32, li: usize) -> bool {
    per_mille > 0 && (li as u64).wrapping_mul(0x9E37_79B9) % 1000 < u64::from(per_mille)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The route of a zarr v2 array's chain (as `.zarray` maps it onto the model).
    fn v2_route(dtype: &str, order: &str, compressor: &str) -> Route {
        let zarray = format!(
            r#"{{"zarr_format": 2, "shape": [8, 8], "chunks": [4, 4], "dtype": "{dtype}",
                "fill_value": 0, "order": "{order}", "filters": null, "compressor": {compressor}}}"#
        );
        let meta = zarr::ArrayMetadata::parse_v2(zarray.as_bytes(), None).expect(".zarray");
        route(&meta.codecs)
    }

    /// zarr v2 chains route exactly as the equivalent v3 chains: zstd and blosc-zstd in C
    /// order and native byte order to the GPU, the rest to the CPU.
    #[test]
    fn zarr_v2_chains_route_as_v3_ones() {
        let zstd = r#"{"id": "zstd", "level": 3}"#;
        let blosc_zstd = r#"{"id": "blosc", "cname": "zstd", "clevel": 5, "shuffle": 1}"#;
        let native = if cfg!(target_endian = "big") { ">u2" } else { "<u2" };
        let swapped = if cfg!(target_endian = "big") { "<u2" } else { ">u2" };
        assert_eq!(v2_route(native, "C", zstd), Route::Zstd);
        assert_eq!(v2_route("|u1", "C", zstd), Route::Zstd);
        assert_eq!(v2_route(native, "C", blosc_zstd), Route::BloscZstd);
        assert_eq!(v2_route(native, "F", zstd), Route::Cpu);
        assert_eq!(v2_route(swapped, "C", zstd), Route::Cpu);
        assert_eq!(v2_route(swapped, "C", blosc_zstd), Route::Cpu);
        let blosc_lz4 = r#"{"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1}"#;
        for other in [blosc_lz4, r#"{"id": "lz4"}"#, r#"{"id": "zlib", "level": 1}"#, "null"] {
            assert_eq!(v2_route(native, "C", other), Route::Cpu, "{other}");
        }
    }
}
