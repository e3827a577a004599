//! Host references for the GPU tests: the host engine's casts (`crate::cast`, which
//! `damacy::cast` uses too), the host scatter and fill, and deterministic test data
//! (splitmix64).

use splitmix::SplitMix64;
use zarr::odometer::{advance, c_strides};

use zarr::{DataType, OutDtype};

use crate::desc::{FillSpec, Shuffle, ShuffleSpec};

pub(crate) use crate::cast::{f32_to_bf16_bits, f32_to_f16_bits};
use crate::host::load_f32;

/// `cast_run` of the host engine.
pub(crate) fn cast_run(src_t: DataType, out: OutDtype, src: &[u8], dst: &mut [u8]) {
    let s = src_t.size();
    match out {
        OutDtype::Native => dst.copy_from_slice(src),
        OutDtype::F32 => {
            for (d, v) in dst.chunks_exact_mut(4).zip(src.chunks_exact(s)) {
                d.copy_from_slice(&load_f32(src_t, v).to_ne_bytes());
            }
        }
        OutDtype::Bf16 => {
            for (d, v) in dst.chunks_exact_mut(2).zip(src.chunks_exact(s)) {
                d.copy_from_slice(&f32_to_bf16_bits(load_f32(src_t, v)).to_ne_bytes());
            }
        }
        OutDtype::F16 => {
            for (d, v) in dst.chunks_exact_mut(2).zip(src.chunks_exact(s)) {
                d.copy_from_slice(&f32_to_f16_bits(load_f32(src_t, v)).to_ne_bytes());
            }
        }
    }
}

/// Every element coordinate of a box of extent `ext`, in C order.
pub(crate) fn box_coords(ext: &[u64]) -> Vec<Vec<u64>> {
    if ext.contains(&0) {
        return Vec::new();
    }
    let mut c = vec![0u64; ext.len()];
    let mut out = vec![c.clone()];
    while advance(&mut c, ext) {
        out.push(c.clone());
    }
    out
}

/// The host scatter of one chunk box into sample `sample` of a `[N, ...sample_shape]`
/// output (element by element: the simplest possible statement of the semantics).
#[allow(clippy::too_many_arguments)]
pub(crate) fn scatter(
    src_t: DataType,
    out: OutDtype,
    chunk: &[u8],
    chunk_shape: &[u64],
    in_chunk_lo: &[u64],
    sample: u64,
    sample_shape: &[u64],
    in_sample_lo: &[u64],
    ext: &[u64],
    dst: &mut [u8],
) {
    let (s, o) = (src_t.size(), out.size(src_t));
    let (cs, ss) = (c_strides(chunk_shape), c_strides(sample_shape));
    let sample_elems: u64 = sample_shape.iter().product();
    for c in box_coords(ext) {
        let mut si = 0u64;
        let mut di = sample * sample_elems;
        for a in 0..c.len() {
            si += (in_chunk_lo[a] + c[a]) * cs[a];
            di += (in_sample_lo[a] + c[a]) * ss[a];
        }
        let (si, di) = (si as usize, di as usize);
        cast_run(src_t, out, &chunk[si * s..(si + 1) * s], &mut dst[di * o..(di + 1) * o]);
    }
}

/// Deterministic test data: the workspace's splitmix64 stream, with the element and byte
/// helpers the tests need.
#[derive(Debug, Clone)]
pub(crate) struct Rng(SplitMix64);

#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(SplitMix64::new(seed))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n`; `0` when `n == 0`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }

    /// Element bytes that exercise every cast path: random bit patterns, plus special
    /// values (NaN with payloads, infinities, ties, subnormals) for the float types.
    pub(crate) fn elements(&mut self, t: DataType, n: usize) -> Vec<u8> {
        let specials: &[u64] = match t {
            DataType::Float16 => &[0x7c00, 0xfc00, 0x7c01, 0xfe00, 0x0001, 0x8000, 0x7bff, 0x3c00],
            DataType::BFloat16 => &[0x7f80, 0xff80, 0x7f81, 0xffc1, 0x0001, 0x8000, 0x3f80],
            DataType::Float32 => &[
                0x7f80_0000,
                0xff80_0000,
                0x7f80_0001,
                0xffc0_1234,
                0x3f80_8000,
                0x3f81_8000,
                0x477f_f000,
                0x4780_0000,
                0x3380_0000,
                0x0000_0001,
                0x8000_0000,
            ],
            DataType::Float64 => &[
                0x7ff0_0000_0000_0000,
                0x7ff0_0000_0000_0001,
                0xfff8_1234_5678_9abc,
                0x3ff0_0000_1000_0000,
                0x3ff0_0000_3000_0000,
                0x0000_0000_0000_0001,
            ],
            DataType::Int32 => &[16_777_217, 0x7fff_ffff, 0x8000_0000],
            DataType::UInt64 | DataType::Int64 => {
                &[u64::MAX, 1 << 63, (1 << 53) + 1, (1 << 24) + 1]
            }
            DataType::Bool => &[0, 1, 2, 255],
            _ => &[],
        };
        let size = t.size();
        let mut out = Vec::with_capacity(n * size);
        for i in 0..n {
            let v = if !specials.is_empty() && self.below(4) == 0 {
                specials[i % specials.len()]
            } else {
                self.next_u64()
            };
            out.extend_from_slice(&v.to_le_bytes()[..size]);
        }
        out
    }
}

/// A random box of extent at most `min(chunk, sample)` per axis, anywhere in both.
pub(crate) fn random_box(
    rng: &mut Rng,
    chunk: &[u64],
    sample: &[u64],
) -> (Vec<u64>, Vec<u64>, Vec<u64>) {
    let ext: Vec<u64> = chunk.iter().zip(sample).map(|(&c, &s)| 1 + rng.below(c.min(s))).collect();
    let lo_c = chunk.iter().zip(&ext).map(|(&c, &e)| rng.below(c - e + 1)).collect();
    let lo_s = sample.iter().zip(&ext).map(|(&s, &e)| rng.below(s - e + 1)).collect();
    (lo_c, lo_s, ext)
}

/// (chunk index, sample, lo in chunk, lo in sample, extent)
pub(crate) type BoxSpec = (usize, u64, Vec<u64>, Vec<u64>, Vec<u64>);

pub(crate) struct Case {
    pub(crate) chunk_shape: Vec<u64>,
    pub(crate) sample_shape: Vec<u64>,
    /// (chunk index, sample, lo in chunk, lo in sample, extent)
    pub(crate) boxes: Vec<BoxSpec>,
    pub(crate) samples: u64,
}

pub(crate) const SHAPES: [(&[u64], &[u64]); 5] = [
    (&[37], &[29]),
    (&[5, 9], &[6, 7]),
    (&[3, 4, 7], &[4, 3, 6]),
    (&[2, 3, 4, 5], &[3, 2, 5, 4]),
    (&[2, 2, 3, 3, 4], &[3, 2, 2, 4, 3]),
];

pub(crate) fn case(rng: &mut Rng, chunk: &[u64], sample: &[u64]) -> Case {
    // Samples 0, 1 and 3 get one box each (from chunks 0, 1, 0); sample 2 stays poisoned.
    let mut boxes = Vec::new();
    for (c, s) in [(0usize, 0u64), (1, 1), (0, 3)] {
        let (lc, ls, e) = random_box(rng, chunk, sample);
        boxes.push((c, s, lc, ls, e));
    }
    Case { chunk_shape: chunk.to_vec(), sample_shape: sample.to_vec(), boxes, samples: 4 }
}

/// Encodes `plain` as a blosc zstd frame and returns its decoded but still shuffled bytes
/// (what the GPU engine holds after nvCOMP) with the frame's shuffle description.
pub(crate) fn blosc_shuffled(
    plain: &[u8],
    opts: &zarr::blosc::EncodeOptions,
) -> (Vec<u8>, ShuffleSpec) {
    let frame = zarr::blosc::encode(plain, opts).expect("blosc encode");
    let lay = zarr::blosc::layout(&frame).expect("layout");
    let mut buf = vec![0u8; lay.nbytes];
    for s in zarr::blosc::streams(&frame).expect("streams") {
        let at = s.block * lay.blocksize + s.offset;
        let dst = &mut buf[at..at + s.len];
        if s.raw {
            dst.copy_from_slice(&frame[s.src.clone()]);
        } else {
            let n =
                zstd::bulk::decompress_to_buffer(&frame[s.src.clone()], dst).expect("zstd stream");
            assert_eq!(n, s.len);
        }
    }
    // The project's CPU decoder is the reference for what the frame holds.
    let mut check = vec![0u8; lay.nbytes];
    zarr::blosc::decode(&frame, &mut check).expect("blosc decode");
    assert_eq!(check, plain);
    let shuffle = match lay.shuffle {
        zarr::blosc::Shuffle::None => Shuffle::None,
        zarr::blosc::Shuffle::Byte => Shuffle::Byte,
        zarr::blosc::Shuffle::Bit => Shuffle::Bit,
    };
    (buf, ShuffleSpec { shuffle, typesize: lay.typesize as u32, blocksize: lay.blocksize as u64 })
}

/// Compressible bytes (small values with noise), so blosc keeps its filters.
pub(crate) fn compressible(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i / 3) % 11) as u8 ^ (rng.below(4) as u8)).collect()
}

/// Fill boxes: (sample, corner in the sample, extent).
pub(crate) type FillBoxes = Vec<(u64, Vec<u64>, Vec<u64>)>;

/// A random box in each of `samples` of shape `shape`.
pub(crate) fn fill_boxes(rng: &mut Rng, shape: &[u64], samples: &[u64]) -> FillBoxes {
    samples
        .iter()
        .map(|&s| {
            let (_, lo, ext) = random_box(rng, shape, shape);
            (s, lo, ext)
        })
        .collect()
}

/// The fill specs of `boxes` in samples of shape `shape`.
pub(crate) fn fill_specs<'a>(boxes: &'a FillBoxes, shape: &'a [u64]) -> Vec<FillSpec<'a>> {
    boxes
        .iter()
        .map(|(s, lo, e)| FillSpec { sample: *s, sample_shape: shape, in_sample_lo: lo, extent: e })
        .collect()
}

/// An output of `n` elements, `poison` everywhere but in `boxes`, which hold `value`.
pub(crate) fn fill_reference(
    boxes: &FillBoxes,
    shape: &[u64],
    value: &[u8],
    n: u64,
    poison: u8,
) -> Vec<u8> {
    let size = value.len();
    let mut want = vec![poison; n as usize * size];
    let ss = c_strides(shape);
    let se: u64 = shape.iter().product();
    for (s, lo, e) in boxes {
        for c in box_coords(e) {
            let d = (s * se + (0..c.len()).map(|a| (lo[a] + c[a]) * ss[a]).sum::<u64>()) as usize;
            want[d * size..(d + 1) * size].copy_from_slice(value);
        }
    }
    want
}
