//! C-order (row-major) multi-index iteration and strides: the one odometer every layer
//! uses to walk the cells or rows of a box, a grid or a chunk.
//!
//! Walking rows of a box means iterating every axis but the last with [`advance`] over
//! `extent[..rank - 1]` and handling the last axis as one contiguous run.

use std::ops::AddAssign;

/// Advances `idx` to the next multi-index in C order inside `extent` (the last axis moves
/// fastest) and returns `true`; returns `false`, with `idx` back at all zeros, after the
/// last index. An empty `idx` has exactly one index, so the first call returns `false`.
///
/// `idx` and `extent` must have the same length and `idx[a] < extent[a]` on every axis;
/// otherwise the walk ends early (it never panics or loops forever).
pub fn advance<T>(idx: &mut [T], extent: &[T]) -> bool
where
    T: Copy + Ord + AddAssign + From<u8>,
{
    for axis in (0..idx.len().min(extent.len())).rev() {
        idx[axis] += T::from(1);
        if idx[axis] < extent[axis] {
            return true;
        }
        idx[axis] = T::from(0);
    }
    false
}

/// Row-major strides (in elements) of `shape`: the last axis has stride 1.
///
/// Strides of shapes whose element count overflows `u64` wrap; callers validate sizes
/// first (every shape reaching here is bounded by a checked chunk or batch size).
pub fn c_strides(shape: &[u64]) -> Vec<u64> {
    let mut s = vec![1u64; shape.len()];
    for a in (0..shape.len().saturating_sub(1)).rev() {
        s[a] = s[a + 1].wrapping_mul(shape[a + 1]);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visits_every_index_once_in_c_order() {
        let extent = [2u64, 3, 2];
        let mut idx = [0u64; 3];
        let mut seen = vec![idx];
        while advance(&mut idx, &extent) {
            seen.push(idx);
        }
        assert_eq!(seen.len(), 12);
        let strides = c_strides(&extent);
        for (n, i) in seen.iter().enumerate() {
            let linear: u64 = i.iter().zip(&strides).map(|(a, s)| a * s).sum();
            assert_eq!(linear, n as u64, "index {i:?} out of C order");
        }
        assert_eq!(idx, [0, 0, 0], "the walk ends back at zero");
    }

    #[test]
    fn rank_zero_and_usize_indexes() {
        let mut none: [usize; 0] = [];
        assert!(!advance(&mut none, &[]));
        let mut idx = [0usize; 2];
        let mut n = 1;
        while advance(&mut idx, &[4usize, 5]) {
            n += 1;
        }
        assert_eq!(n, 20);
    }

    #[test]
    fn strides_are_row_major() {
        assert_eq!(c_strides(&[4, 5, 6]), vec![30, 6, 1]);
        assert_eq!(c_strides(&[7]), vec![1]);
        assert!(c_strides(&[]).is_empty());
    }
}
