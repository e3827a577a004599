//! The host twin of the device's float conversions (`f32_to_bf16_bits` and
//! `f32_to_f16_bits` in `cuda/kernels.cu`): one definition, used by the host engine
//! (`damacy::cast`) and as the reference of the GPU tests, so the two engines cannot drift.
//!
//! Rules: round to nearest even, overflow to infinity, every NaN becomes the canonical
//! quiet NaN (`0x7fc0` for bf16, keeping the sign; `0x7e00` for f16, keeping the sign).

/// `f32` → bfloat16 bits, round to nearest even, NaN canonicalized.
pub fn f32_to_bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return 0x7fc0 | ((bits >> 16) as u16 & 0x8000);
    }
    let lsb = (bits >> 16) & 1;
    // Cannot overflow past 0xffff_ffff: the largest finite/inf pattern plus the bias
    // stays below 2^32 (0x7f80_0000 + 0x8000 for +inf, likewise for -inf).
    (bits.wrapping_add(0x7fff + lsb) >> 16) as u16
}

/// `f32` → IEEE half bits, round to nearest even, overflow to infinity, NaN canonicalized.
pub fn f32_to_f16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    if x.is_nan() {
        return sign | 0x7e00;
    }
    let exp = ((bits >> 23) & 0xff) as i32;
    let man = bits & 0x007f_ffff;
    // Unbiased exponent rebased to half's bias of 15.
    let e = exp - 127 + 15;
    if exp == 0xff || e >= 0x1f {
        return sign | 0x7c00; // inf, or overflow to inf
    }
    if e <= 0 {
        // Subnormal half (or zero): shift the 24-bit significand into place and round.
        if e < -10 {
            return sign; // rounds to zero (below half the smallest subnormal)
        }
        let m = man | 0x0080_0000;
        let shift = (14 - e) as u32; // 14..=24
        let half = 1u32 << (shift - 1);
        let rem = m & ((1u32 << shift) - 1);
        let mut h = m >> shift;
        if rem > half || (rem == half && (h & 1) == 1) {
            h += 1;
        }
        return sign | h as u16;
    }
    let mut h = ((e as u32) << 10) | (man >> 13);
    let rem = man & 0x1fff;
    if rem > 0x1000 || (rem == 0x1000 && (h & 1) == 1) {
        // A carry out of the mantissa correctly bumps the exponent (and to inf at the top).
        h += 1;
    }
    sign | h as u16
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
