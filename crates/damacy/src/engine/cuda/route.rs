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
