//! Target `metadata_v2`: [`zarr::ArrayMetadata::parse_v2`] on the bytes of a zarr v2
//! `.zarray` (v2 spec §"Metadata"; numcodecs' compressor configurations).
//!
//! Properties: parsing returns `Ok` or `Err` for any bytes; whatever it accepts is a v2
//! model that serializes (`to_zarray`) to a document that parses back equal, and passes
//! `validate`.

use zarr::{ArrayMetadata, ZarrFormat};

/// Parses `data` as a `.zarray` and checks the round trip of anything accepted.
///
/// # Panics
/// When a property fails (that is the finding).
pub fn run_one(data: &[u8]) {
    let Ok(meta) = ArrayMetadata::parse_v2(data, None) else { return };
    assert_eq!(meta.zarr_format, ZarrFormat::V2);
    let text = match meta.to_zarray() {
        Ok(t) => t,
        Err(e) => panic!("accepted metadata cannot be written back: {e}"),
    };
    let again = ArrayMetadata::parse_v2(text.as_bytes(), None);
    assert_eq!(again.as_ref(), Ok(&meta), "accepted metadata does not round-trip: {text}");
    assert_eq!(meta.validate(), Ok(()), "accepted metadata does not validate: {text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeds are what the mutator starts from: every one but the two rejects parses,
    /// so the campaign starts inside the accepted language.
    #[test]
    fn the_seeds_parse_but_the_rejects() {
        let dir = crate::campaign::corpus_root().join("metadata_v2");
        let files = crate::campaign::read_corpus(&dir).unwrap();
        assert_eq!(files.len(), 18);
        for (name, bytes) in files {
            let parsed = ArrayMetadata::parse_v2(&bytes, None);
            let reject =
                matches!(name.as_str(), "v2_filter_delta.zarray" | "v2_compressor_bz2.zarray");
            assert_eq!(parsed.is_err(), reject, "{name}: {parsed:?}");
        }
    }
}
