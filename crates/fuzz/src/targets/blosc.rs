//! Target `blosc`: [`zarr::blosc::layout`], [`zarr::blosc::streams`] and
//! [`zarr::blosc::decode`] on a blosc1 frame (c-blosc 1.x `README_HEADER.rst`).
//!
//! Properties: all three return `Ok` or `Err` for any bytes; every located stream lies
//! inside the frame, after the header, and decodes into its block; a decoded frame fills
//! exactly the size its header declares, writing neither less (two runs over differently
//! poisoned buffers agree) nor more (the bytes after it stay untouched).
//!
//! Nearly every insertion or deletion breaks the header's total size (`cbytes`), so such
//! an input is parsed a second time with `cbytes` repaired, and the shifted block offsets
//! and stream lengths behind that check reach the stream parser and the decoders.

use zarr::blosc;

use super::output::{HARNESS_OUTPUT_LIMIT, poison};

/// Bytes of slack after the declared size, which decoding must leave alone.
const SLACK: usize = 64;

/// Parses and decodes the frame `data` (and, if its total size is wrong, a copy with
/// the size repaired) and checks what is accepted.
///
/// # Panics
/// When a property fails (that is the finding).
pub fn run_one(data: &[u8]) {
    if let Err(zarr::Error::BloscLength { .. }) = blosc::layout(data)
        && let Ok(len) = u32::try_from(data.len())
    {
        let mut repaired = data.to_vec();
        repaired[12..16].copy_from_slice(&len.to_le_bytes());
        check(&repaired);
    } else {
        check(data);
    }
}

fn check(data: &[u8]) {
    let Ok(layout) = blosc::layout(data) else { return };
    if let Ok(streams) = blosc::streams(data) {
        for s in &streams {
            assert!(
                s.src.start >= blosc::HEADER_LEN
                    && s.src.start <= s.src.end
                    && s.src.end <= data.len(),
                "stream {:?} outside the frame of {} bytes",
                s.src,
                data.len()
            );
            assert!(s.block < layout.nblocks, "stream of block {} of {}", s.block, layout.nblocks);
            assert!(
                s.offset + s.len <= layout.block_len(s.block),
                "stream at {}+{} past its block of {}",
                s.offset,
                s.len,
                layout.block_len(s.block)
            );
        }
    }
    if layout.nbytes > HARNESS_OUTPUT_LIMIT {
        return;
    }
    // Most mutated frames fail to decode: try into a zeroed buffer first (cheap to
    // allocate), and poison only for the frames that decode.
    let mut out = vec![0u8; layout.nbytes + SLACK];
    if blosc::decode(data, &mut out).is_err() {
        return;
    }
    let mut runs = [(0xA5u8, Vec::new()), (0x5A, Vec::new())];
    for (pattern, out) in &mut runs {
        *out = vec![0u8; layout.nbytes + SLACK];
        poison(out, *pattern);
        let tail = out[layout.nbytes..].to_vec();
        let n = blosc::decode(data, out).expect("a frame that decoded once fails the second time");
        assert_eq!(
            n, layout.nbytes,
            "decode reports {n} bytes, the header declares {}",
            layout.nbytes
        );
        assert_eq!(out[layout.nbytes..], tail[..], "decode wrote past the declared size");
    }
    assert!(
        runs[0].1[..layout.nbytes] == runs[1].1[..layout.nbytes],
        "decode left bytes of the output unwritten"
    );
}
