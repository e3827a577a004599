//! Fuzz target: blosc frame parsing and decoding return `Ok` or `Err` for any bytes, and
//! a decoded frame fills exactly the size its header declares.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(layout) = zarr::blosc::layout(data) else { return };
    // Keep allocations bounded: frames declaring huge outputs are skipped.
    if layout.nbytes > 1 << 24 {
        return;
    }
    let mut out = vec![0u8; layout.nbytes];
    if let Ok(n) = zarr::blosc::decode(data, &mut out) {
        assert_eq!(n, layout.nbytes);
    }
});
