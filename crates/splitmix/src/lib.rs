//! splitmix64, the one small PRNG of the workspace: the bench's crop sequence and
//! synthetic voxels, the latency store's delays, and the tests' deterministic data all
//! draw from it, and other implementations (the Python tensorstore peer of
//! `bench-compare`) replay it bit for bit. No dependencies, no `unsafe`.
//!
//! Three forms of one sequence: [`mix64`], the output function; [`splitmix64`]`(seed, i)`,
//! the `i`-th output of the stream seeded by `seed`, computed without state (so
//! concurrent callers need only a counter); and [`SplitMix64`], the stream as a generator
//! with unbiased bounded draws and floats.
//!
//! # Algorithm (all arithmetic modulo 2^64)
//!
//! ```text
//! state = seed
//! next_u64():
//!     state = state + 0x9E3779B97F4A7C15
//!     z = state
//!     z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
//!     z = (z ^ (z >> 27)) * 0x94D049BB133111EB
//!     return z ^ (z >> 31)
//! below(n), n >= 1:                      # unbiased, by rejection
//!     threshold = 2^64 mod n
//!     repeat: x = next_u64()  until x >= threshold
//!     return x mod n
//! below(0) = 0 and draws nothing         # defined so that no input panics
//! next_f64() = (next_u64() >> 11) * 2^-53   # in [0, 1)
//! ```
//!
//! Rejection keeps exactly `2^64 - threshold` accepted values, a multiple of `n`, so every
//! residue is equally likely; for the small `n` used here a rejection happens with
//! probability below `n / 2^64`, i.e. practically never, but the rule is part of the
//! contract. The same in Python:
//!
//! ```text
//! M = (1 << 64) - 1
//! class Rng:
//!     def __init__(self, seed): self.s = seed & M
//!     def next_u64(self):
//!         self.s = (self.s + 0x9E3779B97F4A7C15) & M
//!         z = self.s
//!         z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
//!         z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
//!         return z ^ (z >> 31)
//!     def below(self, n):
//!         if n == 0: return 0
//!         t = (1 << 64) % n
//!         while True:
//!             x = self.next_u64()
//!             if x >= t: return x % n
//! ```

#![forbid(unsafe_code)]

/// The splitmix64 increment (the golden ratio in 64-bit fixed point).
pub const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// splitmix64's output function: a bijective 64-bit mixer.
///
/// Also a hash on its own: the bench's generator hashes voxel coordinates into noise
/// with it.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Output `i` (0-based) of the stream seeded by `seed`:
/// `mix64(seed + (i + 1) * GAMMA)`, equal to the `i + 1`-th [`SplitMix64::next_u64`] of
/// `SplitMix64::new(seed)`. `splitmix64(x, 0)` is the common one-shot hash of `x`.
#[inline]
pub fn splitmix64(seed: u64, i: u64) -> u64 {
    mix64(seed.wrapping_add(i.wrapping_add(1).wrapping_mul(GAMMA)))
}

/// A splitmix64 generator; see the crate documentation for the exact algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose first output is `mix64(seed + GAMMA)`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        mix64(self.state)
    }

    /// A uniform integer in `0..n` (unbiased, by rejection); `0` when `n == 0`.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // 2^64 mod n, computed without 128-bit arithmetic: (2^64 - n) mod n.
        let threshold = n.wrapping_neg() % n;
        loop {
            let x = self.next_u64();
            if x >= threshold {
                return x % n;
            }
        }
    }

    /// A uniform `f64` in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Golden values computed independently with:
    // python3 -c "
    // M=(1<<64)-1
    // def sm(s):
    //     out=[]
    //     for _ in range(4):
    //         s=(s+0x9E3779B97F4A7C15)&M; z=s
    //         z=((z^(z>>30))*0xBF58476D1CE4E5B9)&M; z=((z^(z>>27))*0x94D049BB133111EB)&M; out.append(z^(z>>31))
    //     return out
    // print([hex(x) for x in sm(0)]); print([hex(x) for x in sm(42)])"
    #[test]
    fn golden_seed_0() {
        let mut r = SplitMix64::new(0);
        let got: Vec<u64> = (0..4).map(|_| r.next_u64()).collect();
        assert_eq!(
            got,
            [0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4, 0x06c45d188009454f, 0xf88bb8a8724c81ec]
        );
    }

    #[test]
    fn golden_seed_42() {
        let mut r = SplitMix64::new(42);
        let got: Vec<u64> = (0..4).map(|_| r.next_u64()).collect();
        assert_eq!(
            got,
            [0xbdd732262feb6e95, 0x28efe333b266f103, 0x47526757130f9f52, 0x581ce1ff0e4ae394]
        );
    }

    // python3 -c "
    // M=(1<<64)-1
    // s=42; out=[]
    // for n in [10, 1000, 3, 7]:
    //     t=(1<<64)%n
    //     while True:
    //         s=(s+0x9E3779B97F4A7C15)&M; z=s
    //         z=((z^(z>>30))*0xBF58476D1CE4E5B9)&M; z=((z^(z>>27))*0x94D049BB133111EB)&M; x=z^(z>>31)
    //         if x>=t: out.append(x%n); break
    // print(out)"
    #[test]
    fn golden_below_seed_42() {
        let mut r = SplitMix64::new(42);
        let got: Vec<u64> = [10, 1000, 3, 7].into_iter().map(|n| r.below(n)).collect();
        assert_eq!(got, [3, 291, 0, 2]);
    }

    // The same reference sequence (seed 0) through the stateless form, as the latency
    // store's normal generator uses it.
    #[test]
    fn stateless_form_is_the_same_stream() {
        assert_eq!(splitmix64(0, 0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(0, 1), 0x6E78_9E6A_A1B9_65F4);
        for seed in [0, 42, u64::MAX, 0x6461_7461_7365_6564] {
            let mut r = SplitMix64::new(seed);
            for i in 0..100 {
                assert_eq!(splitmix64(seed, i), r.next_u64(), "seed {seed} output {i}");
            }
        }
        // The one-shot hash: mix64 of seed + GAMMA.
        assert_eq!(splitmix64(42, 0), mix64(42u64.wrapping_add(GAMMA)));
        assert_eq!(splitmix64(42, 0), 0xbdd7_3226_2feb_6e95);
    }

    #[test]
    fn below_zero_and_one_draw_correctly() {
        let mut r = SplitMix64::new(7);
        assert_eq!(r.below(0), 0);
        // below(0) draws nothing, so the stream is unchanged.
        assert_eq!(r, SplitMix64::new(7));
        assert_eq!(r.below(1), 0);
        assert_ne!(r, SplitMix64::new(7));
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut r = SplitMix64::new(1);
        let mut seen = [0u32; 5];
        for _ in 0..1000 {
            let v = r.below(5);
            assert!(v < 5);
            seen[v as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 150), "{seen:?}");
    }

    #[test]
    fn f64_in_unit_interval() {
        let mut r = SplitMix64::new(3);
        for _ in 0..1000 {
            let x = r.next_f64();
            assert!((0.0..1.0).contains(&x));
        }
    }
}
