//! Target `metadata`: [`zarr::ArrayMetadata::parse`] on the bytes of a `zarr.json` (zarr
//! v3 core spec §"Array metadata").
//!
//! Properties: parsing returns `Ok` or `Err` for any bytes; whatever it accepts
//! serializes (`to_json`) to a document that parses back equal, and passes `validate`.

use zarr::ArrayMetadata;

/// Parses `data` as a `zarr.json` and checks the round trip of anything accepted.
///
/// # Panics
/// When a property fails (that is the finding).
pub fn run_one(data: &[u8]) {
    let Ok(meta) = ArrayMetadata::parse(data) else { return };
    let json = meta.to_json();
    let again = ArrayMetadata::parse(json.as_bytes());
    assert_eq!(again.as_ref(), Ok(&meta), "accepted metadata does not round-trip: {json}");
    assert_eq!(meta.validate(), Ok(()), "accepted metadata does not validate: {json}");
}
