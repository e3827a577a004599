//! The host twin of the device's float conversions (`f32_to_bf16_bits` and
//! `f32_to_f16_bits` in `cuda/kernels.cu`): one definition, used by the host engine
//! (`damacy::cast`) and as the reference of the GPU tests, so the two engines cannot drift.
//!
//! Rules: round to nearest even, overflow to infinity, every NaN becomes the canonical
//! quiet NaN (`0x7fc0` for bf16, keeping the sign; `0x7e00` for f16, keeping the sign).

/// `f32` → bfloat16 bits, round to nearest even, NaN canonicalized.
pub fn f32_to_bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    let lsb = (bits >> 16) & 1;
    // Cannot overflow past 0xffff_ffff for a number: the largest finite/inf pattern plus
    // the bias stays below 2^32 (0x7f80_0000 + 0x8000 for +inf, likewise for -inf); a
    // NaN's sum is not used.
    let rounded = (bits.wrapping_add(0x7fff + lsb) >> 16) as u16;
    let nan = 0x7fc0 | ((bits >> 16) as u16 & 0x8000);
    // Both computed and one selected, without a branch, so that loops over it vectorize.
    if x.is_nan() { nan } else { rounded }
}

/// `f32` → IEEE half bits, round to nearest even, overflow to infinity, NaN canonicalized.
///
/// Branch-free (each case computed, one selected), so that the host engine's cast loops
/// vectorize: the branching form cost ten times the f32 cast a voxel. The subnormal case
/// lets the FPU round: adding 0.5 (as `2^-1`, scaled so that half's smallest subnormal
/// is the last bit kept) rounds the significand to nearest even, exactly as the integer
/// rounding of the device kernel does.
pub fn f32_to_f16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = (bits >> 16) & 0x8000;
    let abs = bits & 0x7fff_ffff;
    // At or above 65520 (2^16 - 2^4, which rounds up to 2^16): infinity; NaN: quiet.
    let special = if abs > 0x7f80_0000 { 0x7e00 } else { 0x7c00 };
    // Below 2^-14 (half's smallest normal): a subnormal half (or zero), rounded by the
    // FPU: `abs + 0.5` in units where one half-subnormal step is 2^-24 leaves the
    // rounded significand in the low bits.
    const MAGIC: u32 = (127 - 15 + 23 - 10 + 1) << 23;
    let sub = (f32::from_bits(abs) + f32::from_bits(MAGIC)).to_bits().wrapping_sub(MAGIC);
    // A normal half: rebias the exponent, round the 13 dropped bits to nearest even (a
    // carry out of the mantissa correctly bumps the exponent, up to infinity).
    let odd = (abs >> 13) & 1;
    let normal =
        abs.wrapping_add(((15u32.wrapping_sub(127)) << 23).wrapping_add(0xfff) + odd) >> 13;
    let h = if abs >= 0x4780_0000 {
        special
    } else if abs < 0x3880_0000 {
        sub
    } else {
        normal
    };
    (sign | h) as u16
}

/// bfloat16 bits → f32 (exact).
pub fn bf16_bits_to_f32(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

/// IEEE half bits → f32 (exact; a NaN keeps its payload and comes out quiet, as x86's
/// F16C conversion, the `half` crate and the kernels' `f16_bits_to_f32` make it).
pub fn f16_bits_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x03ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        // Subnormal: man × 2^-24, exact in f32 (man < 2^10).
        (0, m) => sign | (m as f32 * (1.0 / 16_777_216.0)).to_bits(),
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, m) => sign | 0x7fc0_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_widening_is_exact_for_every_bit_pattern() {
        for h in 0..=u16::MAX {
            let want = half::f16::from_bits(h).to_f32();
            let got = f16_bits_to_f32(h);
            // Bit for bit, NaNs too: the kernels quiet a signalling NaN, so the host must.
            assert_eq!(got.to_bits(), want.to_bits(), "{h:#06x}");
        }
    }
}
