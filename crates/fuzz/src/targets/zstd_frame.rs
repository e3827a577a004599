//! Target `zstd_frame`: [`kernels::check_zstd_frame`], the structural check of one zstd
//! frame (RFC 8878 §3.1.1) before nvCOMP decodes it.
//!
//! Input layout: the expected decoded size as a little-endian u64, then the frame. Each
//! input is checked twice: against that size, and against the content size the frame
//! header declares (as libzstd reads it), so that mutations of the header's size field
//! still reach the block walk.
//!
//! Properties: the check returns `Ok` or `Err` for any bytes; a frame it accepts agrees
//! with libzstd (the same content size, and the frame spans the whole input), and decodes
//! to exactly the expected size or fails, never to more.

/// Decoding accepted frames is bounded to this size to keep the target fast.
const DECODE_LIMIT: u64 = 1 << 20;

/// Checks the frame in `data` and what is accepted.
///
/// # Panics
/// When a property fails (that is the finding).
pub fn run_one(data: &[u8]) {
    let Some((expected, frame)) = data.split_first_chunk::<8>() else { return };
    let expected = u64::from_le_bytes(*expected);
    check(frame, expected);
    if let Ok(Some(declared)) = zstd::zstd_safe::get_frame_content_size(frame)
        && declared != expected
    {
        check(frame, declared);
    }
}

fn check(frame: &[u8], expected: u64) {
    if kernels::check_zstd_frame(frame, expected).is_err() {
        return;
    }
    assert_eq!(
        zstd::zstd_safe::get_frame_content_size(frame).ok().flatten(),
        Some(expected),
        "accepted a frame whose content size libzstd reads differently"
    );
    assert_eq!(
        zstd::zstd_safe::find_frame_compressed_size(frame).ok(),
        Some(frame.len()),
        "accepted a frame whose extent libzstd reads differently"
    );
    if expected > DECODE_LIMIT {
        return;
    }
    // Room for more than the expected size: decoding must still produce exactly it.
    let mut out = vec![0u8; expected as usize + 4096];
    if let Ok(n) = zstd::bulk::decompress_to_buffer(frame, &mut out) {
        assert_eq!(n as u64, expected, "an accepted frame decodes to {n} bytes");
    }
}
