//! Host references for the GPU tests: the host engine's casts (`crate::cast`, which
//! `damacy::cast` uses too), the host scatter and fill, and deterministic test data
//! (splitmix64).

use splitmix::SplitMix64;
use zarr::odometer::{advance, c_strides};

use zarr::{DataType, OutDtype};

pub(crate) use crate::cast::{f32_to_bf16_bits, f32_to_f16_bits};

fn load_f32(src: DataType, b: &[u8]) -> f32 {
    macro_rules! ne {
        ($t:ty) => {{
            let mut a = [0u8; std::mem::size_of::<$t>()];
            a.copy_from_slice(b);
            <$t>::from_ne_bytes(a)
        }};
    }
    match src {
        DataType::Bool => f32::from(u8::from(b[0] != 0)),
        DataType::Int8 => f32::from(ne!(i8)),
        DataType::UInt8 => f32::from(ne!(u8)),
        DataType::Int16 => f32::from(ne!(i16)),
        DataType::UInt16 => f32::from(ne!(u16)),
        DataType::Int32 => ne!(i32) as f32,
        DataType::UInt32 => ne!(u32) as f32,
        DataType::Int64 => ne!(i64) as f32,
        DataType::UInt64 => ne!(u64) as f32,
        DataType::Float16 => half::f16::from_bits(ne!(u16)).to_f32(),
        DataType::BFloat16 => f32::from_bits(u32::from(ne!(u16)) << 16),
        DataType::Float32 => ne!(f32),
        DataType::Float64 => ne!(f64) as f32,
    }
}

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
