//! The fuzzer's one source of randomness: splitmix64 (Steele, Lea and Flood, "Fast
//! splittable pseudorandom number generators", OOPSLA 2014).
//!
//! Everything random in this crate goes through [`SplitMix64`], so the whole campaign is a
//! function of its seed. The bits come from the workspace's one splitmix64
//! (`splitmix::SplitMix64`); this wrapper adds the fuzzer's draws (a plain modulo `below`,
//! short-biased run lengths, picks).

/// The fuzzer's generator: splitmix64 bits and the draws the mutator needs.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    bits: splitmix::SplitMix64,
}

impl SplitMix64 {
    /// A generator whose sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Self { bits: splitmix::SplitMix64::new(seed) }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.bits.next_u64()
    }

    /// A value in `0..n`, or 0 when `n` is 0. The modulo bias is immaterial for fuzzing.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// An index into something of length `len` (0 when `len` is 0).
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// A length in `1..=max` biased towards small values (half of all draws are at most
    /// 8), as most useful insertions and deletions are short.
    pub fn run_len(&mut self, max: usize) -> usize {
        let max = max.max(1);
        let limit = if self.chance(50) { max.min(8) } else { max };
        1 + self.index(limit)
    }

    /// One element of `items`.
    ///
    /// # Panics
    /// When `items` is empty (callers pass constant, non-empty tables).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_sequence() {
        // The first outputs for seed 1234567 from the reference C implementation
        // (splitmix64.c by Sebastiano Vigna).
        let mut r = SplitMix64::new(1_234_567);
        assert_eq!(r.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(r.next_u64(), 3_203_168_211_198_807_973);
        assert_eq!(r.next_u64(), 9_817_491_932_198_370_423);
    }

    #[test]
    fn bounded_draws_stay_in_range() {
        let mut r = SplitMix64::new(7);
        for _ in 0..10_000 {
            assert!(r.below(13) < 13);
            assert!((1..=300).contains(&r.run_len(300)));
        }
        assert_eq!(r.below(0), 0);
        assert_eq!(r.index(0), 0);
    }
}
