//! Which chunks the GPU decodes: the route of each array's codec chain.

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
