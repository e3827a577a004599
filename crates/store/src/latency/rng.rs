//! A seeded, stateless normal generator: splitmix64 over a sample index plus Box-Muller.
//! Stateless so concurrent callers need no lock, only an atomic sample counter.

use splitmix::splitmix64;

/// A uniform in `(0, 1]` from the top 53 bits (never 0, so `ln` is finite).
fn unit(x: u64) -> f64 {
    ((x >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// The `n`-th standard normal sample of the stream seeded by `seed`.
pub(crate) fn standard_normal(seed: u64, n: u64) -> f64 {
    let u1 = unit(splitmix64(seed, n.wrapping_mul(2)));
    let u2 = unit(splitmix64(seed, n.wrapping_mul(2).wrapping_add(1)));
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_samples_have_mean_0_and_variance_1() {
        let n = 20_000;
        let xs: Vec<f64> = (0..n).map(|i| standard_normal(42, i)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.05, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "variance {var}");
        assert!(xs.iter().all(|x| x.is_finite()));
    }
}
