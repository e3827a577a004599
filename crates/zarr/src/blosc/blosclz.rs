//! BloscLZ, blosc's own FastLZ-derived codec (c-blosc 1.x `blosclz.c`, format version 1):
//! a decoder for any stream c-blosc writes and a small greedy encoder.
//!
//! A stream is a sequence of tokens. The first byte is always a literal control byte
//! whose top three bits are a marker and are ignored. A control byte `c < 32` starts a
//! literal run of `c + 1` bytes. Otherwise `c >> 5` is a length code `l` (7 means extra
//! length bytes follow, each 255 continuing) and `c & 31` the high bits of the distance,
//! whose low byte follows: the match copies `l + 2 (+ extra)` bytes from
//! `distance + 1` bytes back. High bits 31 with low byte 255 flag a far match whose
//! 16-bit big-endian distance follows, counted from 8192.

/// Largest near-match distance code (`MAX_DISTANCE` in blosclz.c).
const MAX_DISTANCE: usize = 8191;
/// Longest literal run one control byte can announce.
const MAX_COPY: usize = 32;

/// Why a BloscLZ stream failed to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LzError {
    /// The stream ended inside a token.
    Truncated,
    /// A literal or match would write past the expected output length.
    Overrun,
    /// A match refers to bytes before the start of the output.
    BadDistance,
}

impl LzError {
    pub(crate) fn message(self) -> &'static str {
        match self {
            LzError::Truncated => "stream ends inside a token",
            LzError::Overrun => "stream decodes to more bytes than the block holds",
            LzError::BadDistance => "match refers to bytes before the start of the block",
        }
    }
}

/// Decodes `input` into `out`, returning the number of bytes written (at most `out.len()`).
///
/// # Errors
/// [`LzError`] for a truncated, overrunning or self-inconsistent stream.
pub(crate) fn decompress(input: &[u8], out: &mut [u8]) -> Result<usize, LzError> {
    let Some((&first, mut rest)) = input.split_first() else {
        return Err(LzError::Truncated);
    };
    let mut ctrl = usize::from(first & 31);
    let mut op = 0usize;
    loop {
        if ctrl < 32 {
            let run = ctrl + 1;
            let lit = rest.get(..run).ok_or(LzError::Truncated)?;
            out.get_mut(op..op + run).ok_or(LzError::Overrun)?.copy_from_slice(lit);
            op += run;
            rest = &rest[run..];
        } else {
            let mut len = (ctrl >> 5) - 1;
            let hi = (ctrl & 31) << 8;
            if len == 6 {
                loop {
                    let (&code, tail) = rest.split_first().ok_or(LzError::Truncated)?;
                    rest = tail;
                    len += usize::from(code);
                    if code != 255 {
                        break;
                    }
                }
            }
            let (&code, tail) = rest.split_first().ok_or(LzError::Truncated)?;
            rest = tail;
            len += 3;
            let mut back = hi + usize::from(code);
            if code == 255 && hi == 31 << 8 {
                let far = rest.get(..2).ok_or(LzError::Truncated)?;
                back = (usize::from(far[0]) << 8 | usize::from(far[1])) + MAX_DISTANCE;
                rest = &rest[2..];
            }
            // The reference is `back + 1` bytes behind the write position.
            let start = op.checked_sub(back + 1).ok_or(LzError::BadDistance)?;
            let end = op.checked_add(len).filter(|&e| e <= out.len()).ok_or(LzError::Overrun)?;
            if back == 0 {
                let value = out[start];
                out[op..end].fill(value);
            } else if back + 1 >= len {
                out.copy_within(start..start + len, op);
            } else {
                // Overlapping copy: each byte may read one written in this same match.
                for i in 0..len {
                    out[op + i] = out[start + i];
                }
            }
            op = end;
        }
        match rest.split_first() {
            Some((&c, tail)) => {
                ctrl = usize::from(c);
                rest = tail;
            }
            None => return Ok(op),
        }
    }
}

/// Greedy BloscLZ encoder. Returns `None` when the encoding would not be shorter than
/// `input` (blosc then stores the stream raw).
pub(crate) fn compress(input: &[u8]) -> Option<Vec<u8>> {
    const HASH_LOG: u32 = 14;
    // Matches stop this far from the end so the stream always ends with a literal,
    // which c-blosc's decoder requires.
    const TAIL: usize = 4;
    if input.len() < 16 {
        return None;
    }
    let hash = |p: usize| -> usize {
        let v = u32::from_le_bytes([input[p], input[p + 1], input[p + 2], 0]);
        (v.wrapping_mul(2_654_435_761) >> (32 - HASH_LOG)) as usize
    };
    let mut table = vec![usize::MAX; 1 << HASH_LOG];
    let mut out = Vec::with_capacity(input.len());
    let mut literals_from = 0usize;
    let mut ip = 0usize;
    let limit = input.len() - TAIL;
    let flush = |out: &mut Vec<u8>, lits: &[u8]| {
        for chunk in lits.chunks(MAX_COPY) {
            out.push((chunk.len() - 1) as u8);
            out.extend_from_slice(chunk);
        }
    };
    while ip + 3 <= limit {
        let h = hash(ip);
        let cand = table[h];
        table[h] = ip;
        if cand != usize::MAX
            && ip > 0
            && ip - cand - 1 < MAX_DISTANCE
            && input[cand..cand + 3] == input[ip..ip + 3]
        {
            let mut len = 3;
            while ip + len < limit && input[cand + len] == input[ip + len] {
                len += 1;
            }
            // `ip > 0` above means at least one literal precedes the first match, as
            // the format requires.
            flush(&mut out, &input[literals_from..ip]);
            let back = ip - cand - 1;
            let code = len - 2;
            let hi = (back >> 8) as u8;
            if code < 7 {
                out.push(((code as u8) << 5) | hi);
            } else {
                out.push((7 << 5) | hi);
                let mut extra = code - 7;
                while extra >= 255 {
                    out.push(255);
                    extra -= 255;
                }
                out.push(extra as u8);
            }
            out.push((back & 255) as u8);
            ip += len;
            literals_from = ip;
            if out.len() >= input.len() {
                return None;
            }
            continue;
        }
        ip += 1;
    }
    flush(&mut out, &input[literals_from..]);
    if let Some(first) = out.first_mut() {
        *first |= 1 << 5;
    }
    (out.len() < input.len()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_literals_and_a_run() {
        // literal "ab" (marker bits set on the first byte), then match len 5 dist 1.
        let stream = [0x20 | 1, b'a', b'b', (3 << 5), 0];
        let mut out = [0u8; 7];
        assert_eq!(decompress(&stream, &mut out), Ok(7));
        assert_eq!(&out, b"abbbbbb");
    }

    #[test]
    fn decodes_an_overlapping_match_and_a_long_length() {
        // "abc" then copy 30 bytes from 3 back: code 7, extra 30-2-7 = 21.
        let stream = [2, b'a', b'b', b'c', 7 << 5, 21, 2, 0, b'z'];
        let mut out = [0u8; 34];
        assert_eq!(decompress(&stream, &mut out), Ok(34));
        let want: Vec<u8> = b"abc".iter().cycle().take(33).copied().chain([b'z']).collect();
        assert_eq!(out.to_vec(), want);
    }

    #[test]
    fn decodes_a_far_match() {
        let mut input = vec![0u8; 9000];
        for (i, b) in input.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        // Literal everything, then a far match copying 4 bytes from 8200 back.
        let mut stream = Vec::new();
        for chunk in input.chunks(32) {
            stream.push((chunk.len() - 1) as u8);
            stream.extend_from_slice(chunk);
        }
        let back = 8200 - 1 - MAX_DISTANCE; // 16-bit far distance field
        stream.extend_from_slice(&[(2 << 5) | 31, 255, (back >> 8) as u8, back as u8, 0, b'!']);
        let mut out = vec![0u8; 9005];
        assert_eq!(decompress(&stream, &mut out), Ok(9005));
        assert_eq!(out[9000..9004], input[800..804]);
        assert_eq!(out[9004], b'!');
    }

    #[test]
    fn rejects_bad_streams() {
        let mut out = [0u8; 8];
        assert_eq!(decompress(&[], &mut out), Err(LzError::Truncated));
        assert_eq!(decompress(&[5, 1, 2], &mut out), Err(LzError::Truncated));
        assert_eq!(decompress(&[0, 1, 1 << 5, 5], &mut out), Err(LzError::BadDistance));
        assert_eq!(decompress(&[0, 1, 7 << 5, 9, 0], &mut out), Err(LzError::Overrun));
        assert_eq!(decompress(&[31; 40], &mut out), Err(LzError::Overrun));
    }

    #[test]
    fn encoder_round_trips_and_compresses_repetitive_data() {
        let input: Vec<u8> = (0..20_000u32).map(|i| ((i / 7) % 13) as u8).collect();
        let enc = compress(&input).expect("repetitive data compresses");
        assert!(enc.len() < input.len() / 4, "{} bytes", enc.len());
        let mut out = vec![0u8; input.len()];
        assert_eq!(decompress(&enc, &mut out), Ok(input.len()));
        assert_eq!(out, input);
    }

    #[test]
    fn encoder_gives_up_on_noise() {
        let mut x = 0x1234_5678u32;
        let input: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        assert_eq!(compress(&input), None);
    }
}
