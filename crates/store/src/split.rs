//! Range splitting: a read larger than `max_part` becomes several parts, fetched
//! concurrently (by different I/O threads of `FsStore`, or as concurrent ranged GETs of
//! `RemoteStore`).

/// Splits `len` bytes into contiguous parts `(relative offset, length)`.
///
/// Rules: no part is empty (a zero-length read has no parts); a read of at most
/// `max_part` bytes is one part; otherwise the parts are as equal as possible, at most
/// `max_part` each where `min_part` allows, and never smaller than `min_part` (the hard
/// rule: when the two conflict, parts grow beyond `max_part`). Callers guarantee
/// `1 <= min_part <= max_part`.
pub(crate) fn split(len: usize, max_part: usize, min_part: usize) -> Vec<(usize, usize)> {
    if len == 0 {
        return Vec::new();
    }
    let max_part = max_part.max(1);
    let min_part = min_part.clamp(1, max_part);
    if len <= max_part {
        return vec![(0, len)];
    }
    let n = len.div_ceil(max_part).min(len / min_part).max(1);
    let base = len / n;
    let extra = len % n;
    let mut parts = Vec::with_capacity(n);
    let mut at = 0;
    for i in 0..n {
        let l = base + usize::from(i < extra);
        parts.push((at, l));
        at += l;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        assert_eq!(split(0, 10, 1), vec![]);
        assert_eq!(split(10, 10, 1), vec![(0, 10)]);
        assert_eq!(split(11, 10, 1), vec![(0, 6), (6, 5)]);
        assert_eq!(split(30, 10, 10), vec![(0, 10), (10, 10), (20, 10)]);
        // min_part wins over max_part: 11 bytes cannot make two parts of >= 9.
        assert_eq!(split(11, 10, 9), vec![(0, 11)]);
    }

    proptest! {
        #[test]
        fn parts_cover_the_range_and_respect_the_bounds(
            len in 0usize..1_000_000,
            max_part in 1usize..100_000,
            min_frac in 0.0f64..=1.0,
        ) {
            let min_part = ((max_part as f64 * min_frac) as usize).clamp(1, max_part);
            let parts = split(len, max_part, min_part);
            let mut at = 0;
            for &(o, l) in &parts {
                prop_assert_eq!(o, at);
                prop_assert!(l > 0, "zero-length part");
                if parts.len() > 1 {
                    prop_assert!(l >= min_part, "part {} < min_part {}", l, min_part);
                }
                if 2 * min_part <= max_part {
                    prop_assert!(l <= max_part, "part {} > max_part {}", l, max_part);
                }
                at += l;
            }
            prop_assert_eq!(at, len);
            prop_assert_eq!(parts.len() == 1, len > 0 && (len <= max_part || len < 2 * min_part));
        }
    }
}
