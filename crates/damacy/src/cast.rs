//! Element casts and the host scatter that places a decoded chunk's intersection into a
//! batch tensor.
//!
//! The casts are defined here, bit for bit, and the CUDA kernels implement the same
//! arithmetic: every source value goes to `f32` first (integers and `f64` round to
//! nearest even, `f16`/`bf16` widen exactly, `bool` is 0 or 1); `bf16` and `f16` outputs
//! then round the `f32` to nearest even, overflow to infinity, and every NaN becomes the
//! canonical quiet NaN of its sign (`0x7fc0` / `0xffc0` for bf16, `0x7e00` / `0xfe00` for
//! f16) so that the two engines cannot disagree on payloads. `Native` copies bytes unchanged.

use std::ops::Range;

use zarr::odometer::{advance, c_strides};
use zarr::{Aabb, DataType, FillValue};

use crate::config::OutDtype;

pub use kernels::cast::{bf16_bits_to_f32, f16_bits_to_f32, f32_to_bf16_bits, f32_to_f16_bits};

/// Converts every element of `src` (elements of `S` bytes, decoded by `load`) with
/// `store` into `dst` (elements of `D` bytes). Generic over the element sizes and
/// closures so each (source, output) pair compiles to its own tight loop: the dtype is
/// decided once per run, not once per element.
#[inline(always)]
fn convert<const S: usize, const D: usize>(
    src: &[u8],
    dst: &mut [u8],
    load: impl Fn([u8; S]) -> f32,
    store: impl Fn(f32) -> [u8; D],
) {
    // Blocks of 16 elements with constant indices inside: the compiler unrolls and
    // vectorizes these (a plain element loop over `chunks_exact` does not).
    const BLOCK: usize = 16;
    let one = |d: &mut [u8], v: &[u8]| {
        let mut a = [0u8; S];
        a.copy_from_slice(v);
        d.copy_from_slice(&store(load(a)));
    };
    // Indexes, not `chunks_exact` iterators: their set-up divides by a run-time chunk
    // size, which cost a fifth of the host engine's scatter on rows of 32 elements
    // (`perf`, many-arrays-8); here every division is by a constant.
    let n = (src.len() / S).min(dst.len() / D);
    let blocks = n / BLOCK;
    for b in 0..blocks {
        let d = &mut dst[b * BLOCK * D..(b + 1) * BLOCK * D];
        let v = &src[b * BLOCK * S..(b + 1) * BLOCK * S];
        for i in 0..BLOCK {
            one(&mut d[i * D..(i + 1) * D], &v[i * S..(i + 1) * S]);
        }
    }
    for e in blocks * BLOCK..n {
        one(&mut dst[e * D..(e + 1) * D], &src[e * S..(e + 1) * S]);
    }
}

/// `f16` output: [`convert`] with [`f32_to_f16_bits`], or where the processor has F16C
/// (x86-64, detected once) its `vcvtps2ph` eight at a time, which rounds to nearest even
/// and overflows to infinity as `f32_to_f16_bits` does, with every NaN lane then set to
/// the quiet NaN of its sign (`0x7e00`, `0xfe00`): the same bits (checked against it on
/// every `f32`), in fewer cycles than the portable rounding.
#[inline(always)]
fn convert_f16<const S: usize>(src: &[u8], dst: &mut [u8], load: impl Fn([u8; S]) -> f32) {
    #[cfg(target_arch = "x86_64")]
    if f16c() {
        // SAFETY: the processor has AVX and F16C (checked just above).
        return unsafe { convert_f16c::<S>(src, dst, load) };
    }
    convert::<S, 2>(src, dst, load, |x: f32| f32_to_f16_bits(x).to_ne_bytes());
}

/// [`convert`] compiled for AVX2 where the processor has it (detected once): the same
/// arithmetic, eight or sixteen elements an instruction instead of four.
#[inline(always)]
fn convert_wide<const S: usize, const D: usize>(
    src: &[u8],
    dst: &mut [u8],
    load: impl Fn([u8; S]) -> f32,
    store: impl Fn(f32) -> [u8; D],
) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the processor has AVX2 (checked just above).
        return unsafe { convert_avx2::<S, D>(src, dst, load, store) };
    }
    convert::<S, D>(src, dst, load, store);
}

/// Whether this processor has AVX2 (detected once).
#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| std::arch::is_x86_feature_detected!("avx2"))
}

/// [`convert`] with AVX2 enabled.
///
/// # Safety
/// The processor must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn convert_avx2<const S: usize, const D: usize>(
    src: &[u8],
    dst: &mut [u8],
    load: impl Fn([u8; S]) -> f32,
    store: impl Fn(f32) -> [u8; D],
) {
    convert::<S, D>(src, dst, load, store);
}

/// Whether this processor has AVX and F16C (detected once).
#[cfg(target_arch = "x86_64")]
fn f16c() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx") && std::arch::is_x86_feature_detected!("f16c")
    })
}

/// [`convert_f16`] with F16C.
///
/// # Safety
/// The processor must have AVX and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
unsafe fn convert_f16c<const S: usize>(src: &[u8], dst: &mut [u8], load: impl Fn([u8; S]) -> f32) {
    use std::arch::x86_64::{
        __m128i, _CMP_UNORD_Q, _MM_FROUND_TO_NEAREST_INT, _mm_and_si128, _mm_blendv_epi8,
        _mm_or_si128, _mm_packs_epi32, _mm_set1_epi16, _mm_storeu_si128, _mm256_castps_si256,
        _mm256_castsi256_si128, _mm256_cmp_ps, _mm256_cvtps_ph, _mm256_extractf128_si256,
        _mm256_loadu_ps,
    };
    const LANES: usize = 8;
    let n = (src.len() / S).min(dst.len() / 2);
    let blocks = n / LANES;
    for b in 0..blocks {
        let v = &src[b * LANES * S..(b + 1) * LANES * S];
        let mut x = [0f32; LANES];
        for (i, x) in x.iter_mut().enumerate() {
            let mut a = [0u8; S];
            a.copy_from_slice(&v[i * S..(i + 1) * S]);
            *x = load(a);
        }
        let d = &mut dst[b * LANES * 2..(b + 1) * LANES * 2];
        // SAFETY: AVX and F16C are enabled on this function (the caller's contract); the
        // unaligned load reads the 8 floats of `x`, the unaligned store writes the 16
        // bytes of `d`.
        unsafe {
            let x = _mm256_loadu_ps(x.as_ptr());
            let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x);
            // NaN lanes (all ones as 32-bit lanes), narrowed to the 16-bit lanes of `h`.
            let nan = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_UNORD_Q>(x, x));
            let nan =
                _mm_packs_epi32(_mm256_castsi256_si128(nan), _mm256_extractf128_si256::<1>(nan));
            // The quiet NaN of the lane's sign, as `f32_to_f16_bits` makes it.
            let quiet = _mm_or_si128(
                _mm_and_si128(h, _mm_set1_epi16(0x8000u16 as i16)),
                _mm_set1_epi16(0x7e00),
            );
            let h = _mm_blendv_epi8(h, quiet, nan);
            _mm_storeu_si128(d.as_mut_ptr().cast::<__m128i>(), h);
        }
    }
    for e in blocks * LANES..n {
        let mut a = [0u8; S];
        a.copy_from_slice(&src[e * S..(e + 1) * S]);
        dst[e * 2..e * 2 + 2].copy_from_slice(&f32_to_f16_bits(load(a)).to_ne_bytes());
    }
}

/// Casts a contiguous run of `src_t` elements into `dst` (`out` elements) with the rules
/// of the module documentation.
pub(crate) fn cast_run(src_t: DataType, out: OutDtype, src: &[u8], dst: &mut [u8]) {
    // One monomorphized loop per (source, output) pair.
    macro_rules! with_store {
        ($S:literal, $load:expr) => {
            match out {
                OutDtype::Native => copy_short(dst, src),
                OutDtype::F32 => convert_wide::<$S, 4>(src, dst, $load, |x: f32| x.to_ne_bytes()),
                OutDtype::Bf16 => convert_wide::<$S, 2>(src, dst, $load, |x: f32| {
                    f32_to_bf16_bits(x).to_ne_bytes()
                }),
                OutDtype::F16 => convert_f16::<$S>(src, dst, $load),
            }
        };
    }
    match src_t {
        DataType::Bool => with_store!(1, |a: [u8; 1]| f32::from(u8::from(a[0] != 0))),
        DataType::Int8 => with_store!(1, |a: [u8; 1]| f32::from(i8::from_ne_bytes(a))),
        DataType::UInt8 => with_store!(1, |a: [u8; 1]| f32::from(a[0])),
        DataType::Int16 => with_store!(2, |a| f32::from(i16::from_ne_bytes(a))),
        DataType::UInt16 => with_store!(2, |a| f32::from(u16::from_ne_bytes(a))),
        DataType::Int32 => with_store!(4, |a| i32::from_ne_bytes(a) as f32),
        DataType::UInt32 => with_store!(4, |a| u32::from_ne_bytes(a) as f32),
        DataType::Int64 => with_store!(8, |a| i64::from_ne_bytes(a) as f32),
        DataType::UInt64 => with_store!(8, |a| u64::from_ne_bytes(a) as f32),
        DataType::Float16 => with_store!(2, |a| f16_bits_to_f32(u16::from_ne_bytes(a))),
        DataType::BFloat16 => with_store!(2, |a| bf16_bits_to_f32(u16::from_ne_bytes(a))),
        DataType::Float32 => with_store!(4, f32::from_ne_bytes),
        DataType::Float64 => with_store!(8, |a| f64::from_ne_bytes(a) as f32),
    }
}

/// Bytes of a cache line, the unit [`copy_out`] streams.
const LINE: usize = 64;

/// Copies `src` into `dst` (equal lengths; the shorter decides) in 16-byte blocks, the
/// last one overlapping its neighbour, without a call: row pieces are tens to hundreds of
/// bytes, where `memmove`'s call and size dispatch cost as much as the copy (27% of the
/// cached native `default-long` gather in `perf`, eleventh session).
#[inline(always)]
pub(crate) fn copy_short(dst: &mut [u8], src: &[u8]) {
    const B: usize = 16;
    let n = dst.len().min(src.len());
    let (dst, src) = (&mut dst[..n], &src[..n]);
    if !(B..=16 * LINE).contains(&n) {
        return dst.copy_from_slice(src);
    }
    let mut k = 0;
    while k + B < n {
        let block: [u8; B] = src[k..k + B].try_into().unwrap_or([0; B]);
        dst[k..k + B].copy_from_slice(&block);
        k += B;
    }
    let block: [u8; B] = src[n - B..].try_into().unwrap_or([0; B]);
    dst[n - B..].copy_from_slice(&block);
}

/// Copies `src` into `dst` (equal lengths; the shorter decides). With `stream`, the whole
/// 64-byte lines of `dst` are written with non-temporal stores on x86-64: they go to
/// memory without first reading each line into the cache (a batch buffer of hundreds of
/// MiB is written once and read later by its consumer, so the read would be wasted), and
/// the partial lines at either end with ordinary stores, so that a line shared with
/// bytes another thread writes is never streamed. Non-temporal stores are weakly
/// ordered: the writer calls [`store_fence`] before it publishes the bytes. Elsewhere, or
/// without `stream`, a plain copy.
pub(crate) fn copy_out(dst: &mut [u8], src: &[u8], stream: bool) {
    let n = dst.len().min(src.len());
    let (dst, src) = (&mut dst[..n], &src[..n]);
    #[cfg(target_arch = "x86_64")]
    if stream {
        let head = (dst.as_ptr() as usize).next_multiple_of(LINE) - dst.as_ptr() as usize;
        let head = head.min(n);
        let body = (n - head) / LINE * LINE;
        if head > 0 {
            copy_short(&mut dst[..head], &src[..head]);
        }
        let (d, s) = (dst[head..head + body].as_mut_ptr(), src[head..head + body].as_ptr());
        for line in (0..body).step_by(LINE) {
            use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_stream_si128};
            // SAFETY: `line + 64 <= body`, inside both slices; `d + line` is 64-byte
            // aligned (after `head`), as `_mm_stream_si128` needs 16; the source loads are
            // unaligned loads. SSE2 is part of x86-64.
            unsafe {
                let (d, s) = (d.add(line).cast::<__m128i>(), s.add(line).cast::<__m128i>());
                for k in 0..LINE / 16 {
                    _mm_stream_si128(d.add(k), _mm_loadu_si128(s.add(k)));
                }
            }
        }
        if head + body < n {
            copy_short(&mut dst[head + body..], &src[head + body..]);
        }
        return;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = stream;
    dst.copy_from_slice(src);
}

/// Orders this thread's earlier non-temporal stores ([`copy_out`]) before its later
/// stores, so that a release (a job counted done) publishes them too.
pub(crate) fn store_fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `sfence` has no operands and no preconditions; SSE is part of x86-64.
    unsafe {
        std::arch::x86_64::_mm_sfence();
    }
}

/// One element of the fill value, cast to the output type.
pub fn cast_fill(fill: &FillValue, src_t: DataType, out: OutDtype) -> Vec<u8> {
    let mut v = vec![0u8; out.size(src_t)];
    cast_run(src_t, out, fill.as_ne_bytes(), &mut v);
    v
}

/// Where a chunk's intersection goes: the chunk's decoded bytes and shape, the box inside
/// the chunk, and the box inside the sample.
#[derive(Debug, Clone, Copy)]
pub struct Scatter<'a> {
    pub src_dtype: DataType,
    pub out: OutDtype,
    pub chunk_shape: &'a [u64],
    pub in_chunk: &'a Aabb,
    pub sample_shape: &'a [u64],
    pub in_sample: &'a Aabb,
}

/// Calls `f(src_row_start, dst_row_start, row_len)` (in elements) for every row of the
/// intersection, iterating all axes but the last in C order. (The host engine walks a band
/// of pieces that share their rows with the first piece's walk.)
pub(crate) fn for_each_row(sc: &Scatter<'_>, mut f: impl FnMut(u64, u64, u64)) {
    let rank = sc.chunk_shape.len();
    let cs = c_strides(sc.chunk_shape);
    let ss = c_strides(sc.sample_shape);
    let ext = sc.in_sample.shape();
    let (outer, row) = ext.split_at(rank - 1);
    let mut idx = vec![0u64; rank - 1];
    // The corners as plain slices once, not through `Dims`'s deref on every row.
    let (chunk_lo, sample_lo): (&[u64], &[u64]) = (&sc.in_chunk.lo, &sc.in_sample.lo);
    loop {
        let mut so = chunk_lo[rank - 1];
        let mut d = sample_lo[rank - 1];
        for a in 0..rank - 1 {
            so += (chunk_lo[a] + idx[a]) * cs[a];
            d += (sample_lo[a] + idx[a]) * ss[a];
        }
        f(so, d, row[0]);
        if !advance(&mut idx, outer) {
            return;
        }
    }
}

/// Calls `f(dst_bytes)` with the byte range of every row of the box `in_sample` of a
/// sample region whose elements are `elem` bytes.
pub(crate) fn fill_rows(
    sample_shape: &[u64],
    in_sample: &Aabb,
    elem: usize,
    mut f: impl FnMut(Range<usize>),
) {
    let sc = Scatter {
        src_dtype: DataType::UInt8,
        out: OutDtype::Native,
        chunk_shape: sample_shape,
        in_chunk: in_sample,
        sample_shape,
        in_sample,
    };
    let o = elem as u64;
    for_each_row(&sc, |_, d, n| f((d * o) as usize..((d + n) * o) as usize));
}

/// Writes `value` (one element) over every element of `dst`.
pub(crate) fn fill_run(dst: &mut [u8], value: &[u8]) {
    if value.iter().all(|&b| b == 0) {
        dst.fill(0);
    } else {
        for e in dst.chunks_exact_mut(value.len()) {
            e.copy_from_slice(value);
        }
    }
}

/// Writes the intersection of one decoded chunk into one sample's output region
/// (`dst` is that sample's whole `[sample_shape]` tensor in the output dtype).
///
/// # Panics
/// Never for boxes produced by the planner; boxes outside `chunk`/`dst` (a bug in the
/// caller) are caught by slice bounds checks rather than writing out of bounds.
pub fn scatter(sc: &Scatter<'_>, chunk: &[u8], dst: &mut [u8]) {
    let s = sc.src_dtype.size();
    let o = sc.out.size(sc.src_dtype);
    for_each_row(sc, |src, d, n| {
        let (src, d, n) = (src as usize, d as usize, n as usize);
        cast_run(
            sc.src_dtype,
            sc.out,
            &chunk[src * s..(src + n) * s],
            &mut dst[d * o..(d + n) * o],
        );
    });
}

/// Fills the box `in_sample` of one sample's output region with one element `value`
/// (already in the output dtype).
pub fn fill_box(sample_shape: &[u64], in_sample: &Aabb, value: &[u8], dst: &mut [u8]) {
    fill_rows(sample_shape, in_sample, value.len(), |d| fill_run(&mut dst[d], value));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bf16_rounds_to_nearest_even_and_canonicalizes_nan() {
        assert_eq!(f32_to_bf16_bits(1.0), 0x3f80);
        // 1 + 2^-8 is exactly halfway between two bf16 values: ties to even (down).
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x3f80_8000)), 0x3f80);
        // 1 + 3*2^-8 is halfway with an odd lower neighbour: ties to even (up).
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x3f81_8000)), 0x3f82);
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert_eq!(f32_to_bf16_bits(f32::INFINITY), 0x7f80);
        assert_eq!(f32_to_bf16_bits(f32::MAX), 0x7f80);
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x7f80_0001)), 0x7fc0);
        assert_eq!(f32_to_bf16_bits(-f32::NAN), 0xffc0);
    }

    proptest! {
        /// Our f16 rounding equals the `half` crate's (round to nearest even) for every
        /// non-NaN f32.
        #[test]
        fn f16_matches_half_crate(bits in any::<u32>()) {
            let x = f32::from_bits(bits);
            prop_assume!(!x.is_nan());
            prop_assert_eq!(f32_to_f16_bits(x), half::f16::from_f32(x).to_bits());
        }

        #[test]
        fn bf16_matches_half_crate(bits in any::<u32>()) {
            let x = f32::from_bits(bits);
            prop_assume!(!x.is_nan());
            prop_assert_eq!(f32_to_bf16_bits(x), half::bf16::from_f32(x).to_bits());
        }
    }

    /// The branch-free f16 rounding against the `half` crate at every exponent, on the
    /// mantissas where rounding changes (the dropped bits just below, at and above one
    /// half, odd and even kept bits, carries into the exponent), both signs. (All 2^32
    /// inputs were compared once, in a release build, when it was written: no mismatch.)
    #[test]
    fn f16_rounds_like_half_at_every_exponent_and_rounding_boundary() {
        let mut mantissas = vec![0u32, 1, 0x7f_ffff, 0x7f_e000, 0x7f_f000, 0x7f_efff, 0x40_0000];
        for kept in [0u32, 1, 2, 3, 0x3fe, 0x3ff] {
            for low in [0u32, 1, 0xfff, 0x1000, 0x1001, 0x1fff] {
                mantissas.push((kept << 13) | low);
            }
        }
        // The subnormal range drops more bits: its halfway points at every shift.
        for shift in 0..23 {
            let half = 1u32 << shift;
            mantissas.extend([half, half - 1, half + 1, half | (half << 1), (half << 1) - 1]);
        }
        for sign in [0u32, 0x8000_0000] {
            for exp in 0u32..=255 {
                for &m in &mantissas {
                    let x = f32::from_bits(sign | (exp << 23) | (m & 0x7f_ffff));
                    let want = if x.is_nan() {
                        ((sign >> 16) as u16) | 0x7e00
                    } else {
                        half::f16::from_f32(x).to_bits()
                    };
                    assert_eq!(f32_to_f16_bits(x), want, "{:#010x}", x.to_bits());
                }
            }
        }
    }

    #[test]
    fn f16_edge_cases() {
        for x in [0.0f32, -0.0, 65504.0, 65520.0, 6.0e-8, 2.9e-8, 3.0e-8, 1.0e-5, -1.5] {
            assert_eq!(f32_to_f16_bits(x), half::f16::from_f32(x).to_bits(), "{x}");
        }
        assert_eq!(f32_to_f16_bits(f32::NAN), 0x7e00);
    }

    #[test]
    fn scatter_places_a_2d_intersection_with_cast() {
        // A 4x4 u16 chunk with values 0..16; take rows 1..3, cols 2..4 into a 3x3 sample
        // at (0, 1).
        let chunk: Vec<u8> = (0u16..16).flat_map(|v| v.to_ne_bytes()).collect();
        let in_chunk = Aabb::new(vec![1, 2], vec![3, 4]).unwrap();
        let in_sample = Aabb::new(vec![0, 1], vec![2, 3]).unwrap();
        let mut out = vec![0xabu8; 9 * 4];
        scatter(
            &Scatter {
                src_dtype: DataType::UInt16,
                out: OutDtype::F32,
                chunk_shape: &[4, 4],
                in_chunk: &in_chunk,
                sample_shape: &[3, 3],
                in_sample: &in_sample,
            },
            &chunk,
            &mut out,
        );
        let got: Vec<u32> =
            out.chunks_exact(4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]])).collect();
        let p = 0xabab_abab;
        let f = |v: f32| v.to_bits();
        assert_eq!(got, vec![p, f(6.0), f(7.0), p, f(10.0), f(11.0), p, p, p]);
    }

    /// `copy_out` writes exactly `src` over `dst` and nothing around it, streamed or not,
    /// at every offset from a cache line and every length across a few lines.
    #[test]
    fn copy_out_writes_exactly_the_range_at_every_alignment() {
        let src: Vec<u8> = (0..400u32).map(|i| (i * 7 + 3) as u8).collect();
        // A 64-byte-aligned region inside a larger buffer.
        let mut buf = vec![0xeeu8; 600];
        let base = buf.as_ptr().align_offset(64);
        for stream in [false, true] {
            for off in 0..70 {
                for len in [0, 1, 15, 63, 64, 65, 127, 128, 129, 200, 300] {
                    buf.fill(0xee);
                    let at = base + off;
                    copy_out(&mut buf[at..at + len], &src[..len], stream);
                    store_fence();
                    assert_eq!(&buf[at..at + len], &src[..len], "{stream} {off} {len}");
                    assert!(buf[..at].iter().chain(&buf[at + len..]).all(|&b| b == 0xee));
                }
            }
        }
    }

    /// `copy_short` (row pieces of `Native` output, `copy_out`'s partial lines) copies
    /// exactly its range at every length across its block and fallback sizes and every
    /// offset within a block, on either side, and nothing next to it.
    #[test]
    fn copy_short_copies_exactly_the_range_at_every_length() {
        let src: Vec<u8> = (0..1200u32).map(|i| (i * 13 + 5) as u8).collect();
        let mut buf = vec![0xeeu8; 1300];
        for len in (0..70).chain([127, 128, 129, 1023, 1024, 1025, 1100]) {
            for (from, to) in [(0, 0), (1, 3), (7, 16), (15, 9)] {
                buf.fill(0xee);
                copy_short(&mut buf[to..to + len], &src[from..from + len]);
                assert_eq!(&buf[to..to + len], &src[from..from + len], "{len} {from} {to}");
                assert!(buf[..to].iter().chain(&buf[to + len..]).all(|&b| b == 0xee));
            }
        }
    }

    /// `f16` output through `cast_run` (with F16C where the processor has it) gives the
    /// bits of `f32_to_f16_bits`: at every rounding position of every exponent (normal and
    /// subnormal halves, overflow), both signs, NaNs with payloads, infinities, and a
    /// stride through all 2^32 patterns, in runs that are not a multiple of 8 long.
    #[test]
    fn f16_output_equals_the_portable_rounding_on_every_kind_of_input() {
        let mut bits: Vec<u32> = (0..=u32::MAX).step_by(65_537).collect();
        for sign in [0u32, 1 << 31] {
            for e in 0..256u32 {
                for k in 0..23 {
                    for m in [1u32 << k, (1 << k) - 1, (1 << k) + 1, 3 << k, (1 << 23) - (1 << k)] {
                        bits.push(sign | (e << 23) | (m & 0x7f_ffff));
                    }
                }
            }
        }
        bits.push(0x7fc0_1234);
        let src: Vec<u8> = bits.iter().flat_map(|b| f32::from_bits(*b).to_ne_bytes()).collect();
        let mut dst = vec![0u8; bits.len() * 2];
        // Runs of 13 elements: the vector loop and its scalar tail both.
        for (s, d) in src.chunks(13 * 4).zip(dst.chunks_mut(13 * 2)) {
            cast_run(DataType::Float32, OutDtype::F16, s, d);
        }
        for (i, b) in bits.iter().enumerate() {
            let got = u16::from_ne_bytes([dst[2 * i], dst[2 * i + 1]]);
            assert_eq!(got, f32_to_f16_bits(f32::from_bits(*b)), "{b:#010x}");
        }
        // From an integer source too (the load runs inside the F16C loop).
        let ints: Vec<u8> = (0..=u16::MAX).flat_map(u16::to_ne_bytes).collect();
        let mut out = vec![0u8; ints.len()];
        cast_run(DataType::UInt16, OutDtype::F16, &ints, &mut out);
        for (v, h) in (0..=u16::MAX).zip(out.chunks_exact(2)) {
            assert_eq!(u16::from_ne_bytes([h[0], h[1]]), f32_to_f16_bits(f32::from(v)), "{v}");
        }
    }

    #[test]
    fn fill_box_writes_only_the_box() {
        let mut out = vec![0u8; 2 * 3];
        fill_box(&[2, 3], &Aabb::new(vec![1, 0], vec![2, 2]).unwrap(), &[7], &mut out);
        assert_eq!(out, vec![0, 0, 0, 7, 7, 0]);
    }

    /// Long runs (the vector loops: AVX2 where the processor has it) give, element for
    /// element, what runs of one element (the scalar loop) give, for every
    /// source dtype into f32 and bf16, over bytes that include NaNs, infinities,
    /// subnormals and integer extremes.
    #[test]
    fn long_runs_cast_element_for_element_like_the_scalar_path() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let bytes: Vec<u8> = (0..8 * 1003)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (x >> 56) as u8
            })
            .collect();
        for t in [
            DataType::Bool,
            DataType::Int8,
            DataType::UInt8,
            DataType::Int16,
            DataType::UInt16,
            DataType::Int32,
            DataType::UInt32,
            DataType::Int64,
            DataType::UInt64,
            DataType::Float16,
            DataType::BFloat16,
            DataType::Float32,
            DataType::Float64,
        ] {
            let (sz, n) = (t.size(), 1003);
            let src = &bytes[..n * sz];
            for out in [OutDtype::F32, OutDtype::Bf16] {
                let o = out.size(t);
                let mut long = vec![0u8; n * o];
                cast_run(t, out, src, &mut long);
                let mut one = vec![0u8; n * o];
                for e in 0..n {
                    // A run of one element takes the scalar loop, not the vector blocks.
                    let d = &mut one[e * o..(e + 1) * o];
                    cast_run(t, out, &src[e * sz..(e + 1) * sz], d);
                }
                assert_eq!(long, one, "{t} -> {out:?}");
            }
        }
    }

    #[test]
    fn every_source_dtype_casts_to_f32_as_documented() {
        let cases: [(DataType, Vec<u8>, f32); 8] = [
            (DataType::Bool, vec![3], 1.0),
            (DataType::Int8, (-5i8).to_ne_bytes().to_vec(), -5.0),
            (DataType::Int32, 16_777_217i32.to_ne_bytes().to_vec(), 16_777_216.0),
            (DataType::UInt64, u64::MAX.to_ne_bytes().to_vec(), 18_446_744_073_709_551_616.0),
            (DataType::Float16, 0x3c00u16.to_ne_bytes().to_vec(), 1.0),
            (DataType::BFloat16, 0xbf80u16.to_ne_bytes().to_vec(), -1.0),
            (DataType::Float64, 0.1f64.to_ne_bytes().to_vec(), 0.1f32),
            (DataType::Int64, (-3i64).to_ne_bytes().to_vec(), -3.0),
        ];
        for (t, bytes, want) in cases {
            let mut d = [0u8; 4];
            cast_run(t, OutDtype::F32, &bytes, &mut d);
            assert_eq!(f32::from_ne_bytes(d), want, "{t}");
        }
    }
}
