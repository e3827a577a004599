//! zstd frames for the frame check's parity tests: valid frames of every header shape,
//! the corrupt cases the existing frame-check tests use, the fuzz corpus's seeds, and
//! splitmix-driven mutations of valid frames. The CPU tests run the host twin (the host
//! check over a device-shaped batch) on them; the GPU tests compare the kernel with it.

use super::reference::{Rng, compressible};
use crate::desc::FrameVerdict;

/// Payloads for real frames: compressible, incompressible (raw blocks) and run-length
/// data, several block counts, and the tiny and empty edge cases.
pub(crate) fn frame_payloads(rng: &mut Rng) -> Vec<Vec<u8>> {
    vec![
        (0..300_000u32).map(|i| (i % 251) as u8 ^ (rng.below(3) as u8)).collect(),
        rng.bytes(200_000),
        vec![7u8; 500_000],
        vec![1, 2, 3],
        Vec::new(),
    ]
}

/// One frame and the decoded size it must declare.
#[derive(Debug, Clone)]
pub(crate) struct FrameCase {
    pub(crate) name: String,
    pub(crate) frame: Vec<u8>,
    pub(crate) expected: u64,
}

fn case(name: impl Into<String>, frame: Vec<u8>, expected: u64) -> FrameCase {
    FrameCase { name: name.into(), frame, expected }
}

const MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// A hand-built frame: the magic, `header` (descriptor onward, up to the first block),
/// then `blocks`.
fn built(header: &[u8], blocks: &[u8]) -> Vec<u8> {
    let mut f = MAGIC.to_vec();
    f.extend_from_slice(header);
    f.extend_from_slice(blocks);
    f
}

/// A raw block header (`last`, size) followed by `size` bytes of `fill`.
fn raw_block(last: bool, size: u32, fill: u8) -> Vec<u8> {
    let h = (size << 3) | u32::from(last);
    let mut b = h.to_le_bytes()[..3].to_vec();
    b.extend(std::iter::repeat_n(fill, size as usize));
    b
}

/// Valid frames (each passes the host check) of every header shape the check reads:
/// libzstd's frames (1, 2 and 4-byte content sizes, raw, RLE and compressed blocks,
/// several blocks, checksums, a window descriptor) and hand-built ones (8-byte content
/// size, dictionary id fields holding 0).
pub(crate) fn valid_frames(rng: &mut Rng) -> Vec<FrameCase> {
    let payloads: Vec<(&str, Vec<u8>)> = vec![
        ("compressible_300k", compressible(rng, 300_000)),
        ("noise_200k", rng.bytes(200_000)),
        ("zeros_500k", vec![7u8; 500_000]),
        ("text_1000", compressible(rng, 1000)),
        ("three", vec![1, 2, 3]),
        ("empty", Vec::new()),
    ];
    let mut out = Vec::new();
    for (name, p) in &payloads {
        for level in [1, 3, 19] {
            let f = zstd::bulk::compress(p, level).expect("zstd compress");
            out.push(case(format!("{name}_l{level}"), f, p.len() as u64));
        }
        let mut c = zstd::bulk::Compressor::new(3).expect("compressor");
        c.include_checksum(true).expect("checksum flag");
        out.push(case(
            format!("{name}_checksum"),
            c.compress(p).expect("compress"),
            p.len() as u64,
        ));
        let mut c = zstd::bulk::Compressor::new(3).expect("compressor");
        c.set_parameter(zstd::zstd_safe::CParameter::WindowLog(10)).expect("window log");
        out.push(case(
            format!("{name}_window_1k"),
            c.compress(p).expect("compress"),
            p.len() as u64,
        ));
    }
    // Single segment, 8-byte content size 5, one raw last block of 5 bytes.
    let mut h = vec![0xe0];
    h.extend_from_slice(&5u64.to_le_bytes());
    out.push(case("built_fcs8", built(&h, &raw_block(true, 5, 9)), 5));
    // Dictionary id fields of 1, 2 and 4 bytes, all 0 (no dictionary).
    for (flag, n) in [(1u8, 1usize), (2, 2), (3, 4)] {
        let mut h = vec![0x20 | flag];
        h.extend(std::iter::repeat_n(0, n));
        h.push(4);
        out.push(case(format!("built_dict_field_{n}"), built(&h, &raw_block(true, 4, 1)), 4));
    }
    // Not single segment: window descriptor 0, 2-byte content size 300 (44 + 256), two
    // raw blocks and an RLE block.
    let mut blocks = raw_block(false, 100, 3);
    blocks.extend(raw_block(false, 100, 4));
    blocks.extend_from_slice(&((100u32 << 3) | 2 | 1).to_le_bytes()[..3]);
    blocks.push(5);
    out.push(case("built_window_rle", built(&[0x40, 0x00, 44, 0], &blocks), 300));
    out
}

/// The corrupt cases of the existing frame-check tests (`zstd_frame.rs`, `tests/host.rs`
/// and the GPU fault tests of `tests/gpu.rs`), plus one hand-built frame per fault the
/// random mutations reach rarely.
pub(crate) fn corrupt_cases(rng: &mut Rng) -> Vec<FrameCase> {
    let mut out = Vec::new();
    // zstd_frame.rs: window descriptors libzstd refuses and the largest it accepts.
    let window = |d: u8| built(&[0x40, d, 0x88, 0x12], &[0x01, 0x00, 0x00]);
    for d in [0xffu8, 22 << 3, 21 << 3 | 7, 0] {
        out.push(case(format!("window_descriptor_{d:#x}"), window(d), 5000));
    }
    // tests/host.rs: each payload at each level, with a wrong size, a broken magic, cut
    // in half, and one byte too long.
    let payloads = frame_payloads(rng);
    for (k, p) in payloads.iter().enumerate() {
        let n = p.len() as u64;
        for level in [1, 3, 19] {
            let f = zstd::bulk::compress(p, level).expect("zstd compress");
            out.push(case(format!("p{k}_l{level}_size_plus_one"), f.clone(), n + 1));
            let mut bad = f.clone();
            bad[0] ^= 0xff;
            out.push(case(format!("p{k}_l{level}_magic"), bad, n));
            out.push(case(format!("p{k}_l{level}_half"), f[..f.len() / 2].to_vec(), n));
            let mut long = f.clone();
            long.push(0);
            out.push(case(format!("p{k}_l{level}_long"), long, n));
        }
    }
    let mut c = zstd::bulk::Compressor::new(3).expect("compressor");
    c.include_contentsize(false).expect("content size flag");
    out.push(case("no_content_size", c.compress(&payloads[0]).expect("compress"), 300_000));
    out.push(case("empty_input", Vec::new(), 0));
    out.push(case("magic_only", MAGIC.to_vec(), 0));
    // tests/gpu.rs: a 64 KiB chunk's frame with a broken magic, replaced by a 128 KiB
    // chunk's frame, and truncated.
    let chunk = compressible(rng, 64 << 10);
    let f = zstd::bulk::compress(&chunk, 3).expect("zstd compress");
    let mut dead = f.clone();
    dead[..4].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    out.push(case("gpu_broken_magic", dead, 64 << 10));
    let big = zstd::bulk::compress(&compressible(rng, 128 << 10), 3).expect("zstd compress");
    out.push(case("gpu_oversized", big, 64 << 10));
    out.push(case("gpu_truncated", f[..f.len() / 2].to_vec(), 64 << 10));
    // One per fault that mutations seldom build.
    out.push(case("reserved_bit", built(&[0x28, 4], &raw_block(true, 4, 0)), 4));
    out.push(case("dictionary", built(&[0x21, 7, 4], &raw_block(true, 4, 0)), 4));
    out.push(case("dictionary_cut", built(&[0x23, 0, 0], &[]), 4));
    out.push(case("reserved_block_type", built(&[0x20, 4], &[0x07, 0, 0]), 4));
    let huge = ((128u32 << 10) + 1) << 3 | 4 | 1;
    out.push(case("block_too_large", built(&[0x20, 4], &huge.to_le_bytes()[..3]), 4));
    out.push(case("raw_past_content", built(&[0x20, 4], &raw_block(true, 5, 0)), 4));
    out.push(case("rle_past_content", built(&[0x20, 4], &[(5 << 3) | 3, 0, 0, 1]), 4));
    out.push(case("block_past_end", built(&[0x20, 4], &raw_block(true, 4, 0)[..5]), 4));
    out.push(case("checksum_past_end", built(&[0x24, 4], &raw_block(true, 4, 0)), 4));
    out.push(case("no_last_block", built(&[0x20, 4], &raw_block(false, 4, 0)), 4));
    out.push(case("fcs_cut", built(&[0xa0, 1, 2], &[]), 4));
    out.push(case("descriptor_cut", built(&[0x40], &[]), 4));
    out
}

/// The fuzz target's seed corpus (`crates/fuzz/corpus/zstd_frame`: the expected size as
/// a little-endian u64, then the frame), read at run time.
pub(crate) fn corpus_seeds() -> Vec<FrameCase> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/zstd_frame");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| {
            let bytes = std::fs::read(&p).expect("corpus file");
            let (size, frame) = bytes.split_first_chunk::<8>()?;
            let name = p.file_name()?.to_string_lossy().into_owned();
            Some(case(format!("seed_{name}"), frame.to_vec(), u64::from_le_bytes(*size)))
        })
        .collect()
}

/// Offsets of the block headers of a frame that passes the check.
fn block_headers(frame: &[u8]) -> Vec<usize> {
    let fhd = frame[4];
    let single = fhd & 0x20 != 0;
    let dict = [0usize, 1, 2, 4][usize::from(fhd & 3)];
    let fcs = match fhd >> 6 {
        0 => usize::from(single),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let mut at = 5 + usize::from(!single) + dict + fcs;
    let mut out = Vec::new();
    loop {
        out.push(at);
        let h = u32::from_le_bytes([frame[at], frame[at + 1], frame[at + 2], 0]);
        let size = (h >> 3) as usize;
        at += 3 + if (h >> 1) & 3 == 1 { 1 } else { size };
        if h & 1 != 0 {
            return out;
        }
    }
}

/// `n` mutations of `bases` (valid frames): bit flips and byte writes (half of them in
/// the frame header), rewritten block headers, cuts, extensions, deletions, and wrong
/// expected sizes, one to three at a time.
pub(crate) fn mutated(rng: &mut Rng, bases: &[FrameCase], n: usize) -> Vec<FrameCase> {
    let heads: Vec<Vec<usize>> = bases.iter().map(|b| block_headers(&b.frame)).collect();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let k = rng.below(bases.len() as u64) as usize;
        let (mut f, mut expected) = (bases[k].frame.clone(), bases[k].expected);
        let mut what = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let len = f.len() as u64;
            let at = |rng: &mut Rng, limit: u64| rng.below(limit.min(len).max(1)) as usize;
            match rng.below(9) {
                0 if len > 0 => {
                    let p = at(rng, 16);
                    f[p] ^= 1 << rng.below(8);
                    what.push("header bit");
                }
                1 if len > 0 => {
                    let p = at(rng, len);
                    f[p] ^= 1 << rng.below(8);
                    what.push("bit");
                }
                2 if len > 0 => {
                    let p = at(rng, 16);
                    f[p] = rng.next_u64() as u8;
                    what.push("header byte");
                }
                3 => {
                    let h = heads[k][rng.below(heads[k].len() as u64) as usize];
                    // Any block type, sizes near the limits and anywhere below them.
                    let size = match rng.below(4) {
                        0 => (128 << 10) + rng.below(3) - 1,
                        1 => rng.below(1 << 21),
                        2 => rng.below(64),
                        _ => len.saturating_sub(h as u64 + 3) + rng.below(3),
                    };
                    let v = (size << 3) | (rng.below(4) << 1) | rng.below(2);
                    if h + 3 <= f.len() {
                        f[h..h + 3].copy_from_slice(&v.to_le_bytes()[..3]);
                    }
                    what.push("block header");
                }
                4 => {
                    f.truncate(rng.below(len + 1) as usize);
                    what.push("cut");
                }
                5 => {
                    for _ in 0..1 + rng.below(8) {
                        f.push(rng.next_u64() as u8);
                    }
                    what.push("extended");
                }
                6 if len > 0 => {
                    f.remove(at(rng, len));
                    what.push("deleted");
                }
                7 => {
                    expected = match rng.below(4) {
                        0 => expected + 1,
                        1 => expected.saturating_sub(1),
                        2 => rng.next_u64() >> rng.below(64),
                        _ => 0,
                    };
                    what.push("expected");
                }
                _ => {
                    if f.len() > 4 {
                        f[4] = rng.next_u64() as u8;
                    }
                    what.push("descriptor");
                }
            }
        }
        out.push(case(
            format!("mutation {i} of {} ({})", bases[k].name, what.join(", ")),
            f,
            expected,
        ));
    }
    out
}

/// The verdict the host check's result stands for.
pub(crate) fn host_verdict(c: &FrameCase) -> FrameVerdict {
    let r = crate::check_zstd_frame(&c.frame, c.expected);
    FrameVerdict::of_check(&r).unwrap_or_else(|| panic!("{}: not a frame fault: {r:?}", c.name))
}
