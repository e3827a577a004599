//! A host-side structural check of one zstd frame (RFC 8878 §3.1.1) before it is handed
//! to nvCOMP.
//!
//! nvCOMP's batched zstd decode does not validate its input (its header says corrupt
//! input is undefined behaviour), and on the H200 with nvCOMP 6.0.0.12 we saw: a broken
//! magic number decoded with success; a frame decoding to more than its output buffer
//! wrote past that buffer into the next chunk's; a truncated frame faulted the context
//! (`CUDA_ERROR_ILLEGAL_ADDRESS`, which poisons every later call). So the engine checks
//! each frame here first, where the bytes are already staged: magic, header fields, a
//! content size equal to the expected decoded size, and block headers that stay inside
//! the frame and end it exactly. What this cannot see is a corrupt *compressed block
//! body* (that needs decoding); zarr's `crc32c` codec, where present, covers it.

use crate::error::{Error, Result};

const MAGIC: u32 = 0xfd2f_b528;
/// The largest decoded size of one block (`Block_Maximum_Size`).
const BLOCK_MAX: u64 = 128 << 10;
/// The largest window log libzstd decodes on 64-bit hosts (`ZSTD_WINDOWLOG_MAX_64`).
/// RFC 8878 allows window logs up to 41, but the CPU path refuses frames above this, so
/// the GPU path must too.
const WINDOW_LOG_MAX: u64 = 31;

/// Each fault the check reports: its reason (the `reason` of [`Error::ZstdFrame`]) and its
/// code on the device (`ZF_*` in `cuda/kernels.cu`, where 0 means the frame passed). The
/// one definition of both, so that a device verdict converts into the host's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum FrameFault {
    /// The first four bytes are not the zstd magic number.
    Magic = 1,
    /// Bit 3 of the frame header descriptor is set.
    ReservedBit = 2,
    /// The window descriptor asks for a window libzstd refuses.
    WindowLog = 3,
    /// A non-zero dictionary id.
    Dictionary = 4,
    /// No frame content size field.
    NoContentSize = 5,
    /// The content size is not the chunk's decoded size.
    ContentSize = 6,
    /// Block type 3.
    ReservedBlockType = 7,
    /// A block size above `Block_Maximum_Size`.
    BlockTooLarge = 8,
    /// Raw and RLE blocks alone decode to more than the content size.
    RawRlePastContent = 9,
    /// A block's bytes run past the frame.
    BlockPastEnd = 10,
    /// The checksum runs past the frame.
    ChecksumPastEnd = 11,
    /// Bytes follow the frame.
    TrailingBytes = 12,
    /// A header field runs past the frame.
    HeaderPastEnd = 13,
}

impl FrameFault {
    /// Every fault, in code order.
    pub const ALL: [Self; 13] = [
        Self::Magic,
        Self::ReservedBit,
        Self::WindowLog,
        Self::Dictionary,
        Self::NoContentSize,
        Self::ContentSize,
        Self::ReservedBlockType,
        Self::BlockTooLarge,
        Self::RawRlePastContent,
        Self::BlockPastEnd,
        Self::ChecksumPastEnd,
        Self::TrailingBytes,
        Self::HeaderPastEnd,
    ];

    /// The reason [`check_zstd_frame`] gives.
    pub const fn reason(self) -> &'static str {
        match self {
            Self::Magic => "not a zstd frame (magic)",
            Self::ReservedBit => "reserved bit set in the frame header",
            Self::WindowLog => "window log above libzstd's limit of 31",
            Self::Dictionary => "frame needs a dictionary",
            Self::NoContentSize => "frame declares no content size",
            Self::ContentSize => "content size differs from the chunk's",
            Self::ReservedBlockType => "reserved block type",
            Self::BlockTooLarge => "block larger than 128 KiB",
            Self::RawRlePastContent => "raw/RLE blocks decode past the content size",
            Self::BlockPastEnd => "block runs past the end of the frame",
            Self::ChecksumPastEnd => "checksum past the end",
            Self::TrailingBytes => "bytes after the frame",
            Self::HeaderPastEnd => "header past the end",
        }
    }

    /// The device code (never 0).
    pub const fn code(self) -> u32 {
        self as u32
    }

    /// The fault of a device code; `None` for 0 (passed) and unknown codes.
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.code() == code)
    }

    /// The fault whose reason is `reason`.
    pub fn from_reason(reason: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.reason() == reason)
    }

    /// The error [`check_zstd_frame`] returns for this fault.
    pub fn error(self, offset: usize, value: u64) -> Error {
        Error::ZstdFrame { reason: self.reason(), offset, value }
    }
}

fn fault(f: FrameFault, offset: usize, value: u64) -> Error {
    f.error(offset, value)
}

fn le(frame: &[u8], at: usize, n: usize) -> Result<u64> {
    let past = || fault(FrameFault::HeaderPastEnd, at, n as u64);
    let b = frame.get(at..at.checked_add(n).ok_or_else(past)?).ok_or_else(past)?;
    Ok(b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
}

/// Checks that `frame` is exactly one zstd frame whose declared content size is
/// `expected` bytes and whose blocks lie inside it.
///
/// # Errors
/// [`Error::ZstdFrame`] naming the first fault and its byte offset: a wrong magic, a
/// reserved bit set, a window log above libzstd's 31, a dictionary (zarr frames have none), no
/// content size, a content
/// size other than `expected`, a block header or block past the end, a reserved block
/// type, a block larger than 128 KiB, raw/RLE blocks decoding past the content size, or
/// bytes after the frame.
pub fn check_zstd_frame(frame: &[u8], expected: u64) -> Result<()> {
    let magic = le(frame, 0, 4)?;
    if magic != u64::from(MAGIC) {
        return Err(fault(FrameFault::Magic, 0, magic));
    }
    let fhd = le(frame, 4, 1)?;
    if fhd & 0x08 != 0 {
        return Err(fault(FrameFault::ReservedBit, 4, fhd));
    }
    let single_segment = fhd & 0x20 != 0;
    let checksum = fhd & 0x04 != 0;
    let dict_bytes = [0usize, 1, 2, 4][(fhd & 3) as usize];
    let fcs_bytes = match fhd >> 6 {
        0 if single_segment => 1,
        0 => 0,
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let mut at = 5 + usize::from(!single_segment);
    if !single_segment {
        let descriptor = le(frame, 5, 1)?;
        if (descriptor >> 3) + 10 > WINDOW_LOG_MAX {
            return Err(fault(FrameFault::WindowLog, 5, descriptor));
        }
    }
    if dict_bytes > 0 && le(frame, at, dict_bytes)? != 0 {
        return Err(fault(FrameFault::Dictionary, at, dict_bytes as u64));
    }
    at += dict_bytes;
    if fcs_bytes == 0 {
        return Err(fault(FrameFault::NoContentSize, 4, fhd));
    }
    let mut content = le(frame, at, fcs_bytes)?;
    if fcs_bytes == 2 {
        content += 256;
    }
    if content != expected {
        return Err(fault(FrameFault::ContentSize, at, content));
    }
    at += fcs_bytes;
    let mut exact = 0u64;
    loop {
        let header = le(frame, at, 3)?;
        let last = header & 1 != 0;
        let kind = (header >> 1) & 3;
        let size = header >> 3;
        let stored = match kind {
            0 => {
                exact += size;
                size
            }
            1 => {
                exact += size;
                1
            }
            2 => size,
            _ => return Err(fault(FrameFault::ReservedBlockType, at, kind)),
        };
        if size > BLOCK_MAX {
            return Err(fault(FrameFault::BlockTooLarge, at, size));
        }
        if exact > expected {
            return Err(fault(FrameFault::RawRlePastContent, at, exact));
        }
        at += 3;
        let end = at.checked_add(stored as usize).filter(|&e| e <= frame.len());
        at = end.ok_or(fault(FrameFault::BlockPastEnd, at, stored))?;
        if last {
            break;
        }
    }
    if checksum {
        at = at.checked_add(4).filter(|&e| e <= frame.len()).ok_or(fault(
            FrameFault::ChecksumPastEnd,
            at,
            4,
        ))?;
    }
    if at != frame.len() {
        return Err(fault(FrameFault::TrailingBytes, at, (frame.len() - at) as u64));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by `cargo xtask fuzz` (target `zstd_frame`): a window descriptor asking for
    /// a 2^41-byte window passed the check although libzstd, the CPU decoder, refuses
    /// window logs above 31.
    #[test]
    fn windows_libzstd_refuses_are_refused() {
        // Not single-segment, 2-byte content size 5000 (4744 + 256), one empty raw last
        // block: only the window descriptor varies.
        let frame = |descriptor: u8| {
            let mut f = MAGIC.to_le_bytes().to_vec();
            f.extend_from_slice(&[0x40, descriptor, 0x88, 0x12]);
            f.extend_from_slice(&[0x01, 0x00, 0x00]);
            f
        };
        for descriptor in [0xff, 22 << 3] {
            assert_eq!(
                check_zstd_frame(&frame(descriptor), 5000),
                Err(fault(FrameFault::WindowLog, 5, u64::from(descriptor)))
            );
        }
        // Window log 31 is the largest libzstd accepts. (That an empty block cannot make
        // 5000 bytes is for the decoder to find; this check cannot see it.)
        assert_eq!(check_zstd_frame(&frame(21 << 3 | 7), 5000), Ok(()));
        assert_eq!(check_zstd_frame(&frame(0), 5000), Ok(()));
    }
}
