//! What the harnesses share about parser output: their own allocation limit and the
//! poison pattern that exposes bytes a decoder left unwritten (a leaf module, so the
//! targets need not import the target table).

/// The most bytes a harness itself allocates for a parser's output (16 MiB): frames that
/// declare more are only parsed, not decoded. The parsers' own allocations are held to
/// the larger [`crate::allocation::CAP`].
pub const HARNESS_OUTPUT_LIMIT: usize = 16 << 20;

/// Fills `buf` with a byte pattern that decoded data is unlikely to repeat by chance, so
/// a comparison of two runs with different patterns finds bytes a decoder left unwritten.
pub(crate) fn poison(buf: &mut [u8], pattern: u8) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = pattern ^ (i as u8).wrapping_mul(31);
    }
}
