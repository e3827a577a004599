//! The mutator: derives a new input from a corpus input (and a second one to splice
//! from), in the manner of AFL's and libFuzzer's havoc stage, plus structural edits for
//! JSON inputs ([`json`]).
//!
//! The forged length is what matters most for these parsers, so integer overwrites are
//! weighted up: 1-, 2-, 4- and 8-byte fields (mostly little-endian, some big-endian)
//! set to boundary values and to sizes near the input's own length.

mod json;

use crate::rng::SplitMix64;

/// The longest input the mutator produces: 64 KiB, above the largest seed (a 47 KB blosc
/// frame) with room to grow, and small enough to keep every target fast.
pub const MAX_INPUT_LEN: usize = 64 << 10;

/// The byte values AFL calls interesting: zero, all ones, and both sides of the sign bit.
const INTERESTING_BYTES: [u8; 4] = [0, 0xff, 0x7f, 0x80];

/// How inputs are mutated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mutator {
    /// No output is longer than this.
    pub max_len: usize,
    /// The inputs are JSON documents: most mutations edit their structure (numbers,
    /// keys, values) and leave them well-formed, so they reach the validation behind the
    /// JSON parser.
    pub json: bool,
}

impl Mutator {
    /// A mutator for byte-format inputs of at most [`MAX_INPUT_LEN`] bytes.
    pub fn binary() -> Self {
        Self { max_len: MAX_INPUT_LEN, json: false }
    }

    /// Writes into `out` a mutation of `base`, splicing from `other` where chosen. The
    /// result is at most `max_len` bytes and differs from `base` (unless both are empty
    /// and `max_len` is 0).
    pub fn mutate(&self, rng: &mut SplitMix64, base: &[u8], other: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&base[..base.len().min(self.max_len)]);
        if self.json && rng.chance(80) {
            let edits = 1 + rng.below(3);
            for _ in 0..edits {
                if !json::mutate(rng, out, other) {
                    self.mutate_bytes(rng, out, other);
                }
            }
            // Most structurally edited documents stay well-formed; some also get byte
            // damage.
            if rng.chance(25) {
                self.mutate_bytes(rng, out, other);
            }
        } else {
            // Stacked edits, mostly few: 1, 2, 4 or 8 at most.
            let most = 1 << rng.below(4);
            let edits = 1 + rng.below(most);
            for _ in 0..edits {
                self.mutate_bytes(rng, out, other);
            }
        }
        out.truncate(self.max_len);
        if out.as_slice() == base {
            // Edits can cancel out (a value set to what it was); an unchanged input
            // would be wasted work.
            match out.len() {
                0 if self.max_len > 0 => out.push(rng.next_u64() as u8),
                0 => {}
                n => out[rng.index(n)] ^= 1 << rng.below(8),
            }
        }
    }

    /// One byte-level edit of `buf`.
    fn mutate_bytes(&self, rng: &mut SplitMix64, buf: &mut Vec<u8>, other: &[u8]) {
        let len = buf.len();
        if len == 0 {
            insert_run(rng, buf, 0);
            return;
        }
        match rng.below(16) {
            0 => buf[rng.index(len)] ^= 1 << rng.below(8),
            1 => buf[rng.index(len)] = *rng.pick(&INTERESTING_BYTES),
            2 => buf[rng.index(len)] = rng.next_u64() as u8,
            3 => {
                let i = rng.index(len);
                let delta = 1 + rng.below(35) as u8;
                buf[i] = if rng.chance(50) {
                    buf[i].wrapping_add(delta)
                } else {
                    buf[i].wrapping_sub(delta)
                };
            }
            // Integer fields carry the lengths and offsets, so they get the most weight.
            4..=7 => overwrite_int(rng, buf),
            8 => add_to_int(rng, buf),
            9 => {
                let at = rng.index(len + 1);
                insert_run(rng, buf, at);
            }
            10 => {
                let at = rng.index(len);
                let n = rng.run_len(len - at);
                buf.drain(at..at + n);
            }
            11 => {
                // Duplicate a run at another position.
                let from = rng.index(len);
                let n = rng.run_len(len - from);
                let run = buf[from..from + n].to_vec();
                let at = rng.index(len + 1);
                buf.splice(at..at, run);
            }
            12 => {
                // Copy a run over another part of the input.
                let from = rng.index(len);
                let n = rng.run_len(len - from);
                let to = rng.index(len - n + 1);
                buf.copy_within(from..from + n, to);
            }
            13 => buf.truncate(rng.index(len)),
            _ => splice(rng, buf, other),
        }
    }
}

/// Inserts a run of random bytes or of one repeated byte at `at`.
fn insert_run(rng: &mut SplitMix64, buf: &mut Vec<u8>, at: usize) {
    let longest = if rng.chance(90) { 64 } else { 4096 };
    let n = rng.run_len(longest);
    let run: Vec<u8> = if rng.chance(50) {
        let b = if rng.chance(50) { *rng.pick(&INTERESTING_BYTES) } else { rng.next_u64() as u8 };
        vec![b; n]
    } else {
        (0..n).map(|_| rng.next_u64() as u8).collect()
    };
    buf.splice(at..at, run);
}

/// Combines `buf` with `other`: the head of one and the tail of the other, or a run of
/// `other` inserted into or written over `buf`.
fn splice(rng: &mut SplitMix64, buf: &mut Vec<u8>, other: &[u8]) {
    if other.is_empty() {
        return;
    }
    let from = rng.index(other.len());
    match rng.below(3) {
        0 => {
            buf.truncate(rng.index(buf.len() + 1));
            buf.extend_from_slice(&other[from..]);
        }
        1 => {
            let run = &other[from..from + rng.run_len(other.len() - from)];
            let at = rng.index(buf.len() + 1);
            buf.splice(at..at, run.iter().copied());
        }
        _ => {
            let run = &other[from..from + rng.run_len(other.len() - from)];
            let at = rng.index(buf.len() + 1);
            let end = (at + run.len()).min(buf.len());
            buf.splice(at..end, run.iter().copied());
        }
    }
}

/// A boundary value for an integer field in an input of `len` bytes: 0, 1, -1, the
/// type limits, powers of two and their neighbours, and sizes near `len` (a length field
/// that is almost right gets past the first checks).
fn interesting_int(rng: &mut SplitMix64, len: usize) -> u64 {
    let len = len as u64;
    match rng.below(6) {
        0 => *rng.pick(&[
            0,
            1,
            2,
            u64::MAX,
            u64::MAX - 1,
            u64::from(u8::MAX),
            u64::from(u16::MAX),
            u64::from(u32::MAX),
            i32::MAX as u64,
            1 << 31,
            i64::MAX as u64,
            1 << 63,
        ]),
        1 | 2 => {
            let p = 1u64 << rng.below(64);
            match rng.below(3) {
                0 => p,
                1 => p - 1,
                _ => p + 1,
            }
        }
        3 | 4 => {
            let near = *rng.pick(&[len, len / 2, len.saturating_mul(2), len.saturating_mul(32)]);
            let delta = *rng.pick(&[0, 1, 2, 4, 8, 16, 32]);
            if rng.chance(50) { near.wrapping_add(delta) } else { near.wrapping_sub(delta) }
        }
        // Sign-extended small negatives.
        _ => (-(1 + rng.below(16) as i64)) as u64,
    }
}

/// Writes `value` as a `width`-byte integer at `at`, little- or big-endian.
fn put_int(buf: &mut [u8], at: usize, width: usize, value: u64, big: bool) {
    let field = &mut buf[at..at + width];
    if big {
        field.copy_from_slice(&value.to_be_bytes()[8 - width..]);
    } else {
        field.copy_from_slice(&value.to_le_bytes()[..width]);
    }
}

fn get_int(buf: &[u8], at: usize, width: usize, big: bool) -> u64 {
    let field = &buf[at..at + width];
    let mut bytes = [0u8; 8];
    if big {
        bytes[8 - width..].copy_from_slice(field);
        u64::from_be_bytes(bytes)
    } else {
        bytes[..width].copy_from_slice(field);
        u64::from_le_bytes(bytes)
    }
}

/// Chooses an integer field of `buf`: a width of 1, 2, 4 or 8 that fits, a position,
/// and an endianness (little-endian three times in four, as in the formats fuzzed here).
fn int_field(rng: &mut SplitMix64, len: usize) -> Option<(usize, usize, bool)> {
    let width = *rng.pick(&[1usize, 2, 4, 4, 8, 8]);
    if width > len {
        return None;
    }
    // Aligned positions first: the formats' fields are aligned to their width.
    let slots = len - width + 1;
    let at = if rng.chance(50) { rng.index(slots) / width * width } else { rng.index(slots) };
    Some((at, width, rng.chance(25)))
}

fn overwrite_int(rng: &mut SplitMix64, buf: &mut [u8]) {
    if let Some((at, width, big)) = int_field(rng, buf.len()) {
        let value = interesting_int(rng, buf.len());
        put_int(buf, at, width, value, big);
    }
}

/// Adds or subtracts a small amount to an integer field (AFL's arithmetic stage):
/// lengths off by a little.
fn add_to_int(rng: &mut SplitMix64, buf: &mut [u8]) {
    if let Some((at, width, big)) = int_field(rng, buf.len()) {
        let v = get_int(buf, at, width, big);
        let delta = 1 + rng.below(64);
        let v = if rng.chance(50) { v.wrapping_add(delta) } else { v.wrapping_sub(delta) };
        put_int(buf, at, width, v, big);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(m: Mutator, seed: u64, base: &[u8], other: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        m.mutate(&mut SplitMix64::new(seed), base, other, &mut out);
        out
    }

    #[test]
    fn deterministic_per_seed() {
        let base: Vec<u8> = (0..200).collect();
        let other = b"another input".to_vec();
        for m in [Mutator::binary(), Mutator { max_len: 1000, json: true }] {
            for seed in 0..500 {
                assert_eq!(run(m, seed, &base, &other), run(m, seed, &base, &other));
            }
            let distinct: std::collections::HashSet<Vec<u8>> =
                (0..500).map(|s| run(m, s, &base, &other)).collect();
            assert!(distinct.len() > 400, "only {} distinct outputs", distinct.len());
        }
    }

    #[test]
    fn outputs_never_exceed_max_len() {
        let base = vec![7u8; 90];
        let other = vec![9u8; 300];
        for max_len in [0, 1, 50, 100] {
            for json in [false, true] {
                let m = Mutator { max_len, json };
                for seed in 0..3000 {
                    let out = run(m, seed, &base, &other);
                    assert!(out.len() <= max_len, "{} > {max_len} (seed {seed})", out.len());
                }
            }
        }
    }

    #[test]
    fn every_output_differs_from_its_base() {
        let base = b"{\"shape\": [1, 2], \"name\": \"bytes\"}".to_vec();
        for m in [Mutator::binary(), Mutator { max_len: 4096, json: true }] {
            for seed in 0..3000 {
                assert_ne!(run(m, seed, &base, b"[3]"), base, "seed {seed}");
            }
            assert!(!run(m, 1, b"", b"").is_empty());
        }
    }

    #[test]
    fn integer_fields_get_forged_lengths() {
        // Some mutation of a zeroed 8-byte field must set it to a size near the input's
        // length, and some to all ones.
        let base = vec![0u8; 64];
        let outs: Vec<Vec<u8>> =
            (0..20_000).map(|s| run(Mutator::binary(), s, &base, b"")).collect();
        let le_u64 = |o: &Vec<u8>, at: usize| o.get(at..at + 8).map(|b| get_int(b, 0, 8, false));
        assert!(outs.iter().any(|o| o.len() == 64 && le_u64(o, 8) == Some(64)));
        assert!(outs.iter().any(|o| o.len() == 64 && le_u64(o, 16) == Some(u64::MAX)));
        assert!(outs.iter().any(|o| o.len() == 64 && get_int(o, 0, 4, true) == 0x8000_0000));
    }

    #[test]
    fn int_fields_round_trip_in_both_byte_orders() {
        let mut buf = [0u8; 8];
        put_int(&mut buf, 2, 4, 0x0102_0304, true);
        assert_eq!(buf, [0, 0, 1, 2, 3, 4, 0, 0]);
        assert_eq!(get_int(&buf, 2, 4, true), 0x0102_0304);
        put_int(&mut buf, 0, 2, 0xBEEF, false);
        assert_eq!(&buf[..2], &[0xEF, 0xBE]);
        assert_eq!(get_int(&buf, 0, 2, false), 0xBEEF);
    }
}
