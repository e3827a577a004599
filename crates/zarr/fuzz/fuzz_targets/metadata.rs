//! Fuzz target: `ArrayMetadata::parse` returns `Ok` or `Err` for any bytes, and whatever
//! it accepts serializes to a document it reads back equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zarr::ArrayMetadata;

fuzz_target!(|data: &[u8]| {
    if let Ok(meta) = ArrayMetadata::parse(data) {
        let again = ArrayMetadata::parse(meta.to_json().as_bytes());
        assert_eq!(again.as_ref(), Ok(&meta));
    }
});
