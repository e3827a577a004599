//! [`Dims`]: the corner or extent of a box, one `u64` per axis, held inline up to
//! [`INLINE_RANK`] axes (the ranks of microscopy, OME-NGFF's five among them) and on the
//! heap beyond. A batch plan holds two boxes per placement, thousands per batch: inline
//! corners made them allocation-free, where two `Vec`s per box made allocation the largest
//! part of planning (docs/PERFORMANCE.md, "Planning without allocating").

use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::{Deref, DerefMut};

/// Axes held without an allocation.
pub const INLINE_RANK: usize = 8;

/// One `u64` per axis; dereferences to `[u64]`.
#[derive(Clone)]
pub struct Dims(Repr);

#[derive(Clone)]
enum Repr {
    Inline { len: u8, v: [u64; INLINE_RANK] },
    Heap(Vec<u64>),
}

impl Dims {
    /// No axes.
    pub const fn new() -> Self {
        Self(Repr::Inline { len: 0, v: [0; INLINE_RANK] })
    }

    /// A copy of `axes`.
    pub fn from_slice(axes: &[u64]) -> Self {
        if axes.len() <= INLINE_RANK {
            let mut v = [0; INLINE_RANK];
            v[..axes.len()].copy_from_slice(axes);
            // In range: at most INLINE_RANK.
            Self(Repr::Inline { len: axes.len() as u8, v })
        } else {
            Self(Repr::Heap(axes.to_vec()))
        }
    }

    /// Appends an axis (moving to the heap past [`INLINE_RANK`] axes).
    pub fn push(&mut self, x: u64) {
        match &mut self.0 {
            Repr::Inline { len, v } if usize::from(*len) < INLINE_RANK => {
                v[usize::from(*len)] = x;
                *len += 1;
            }
            Repr::Inline { v, .. } => {
                let mut heap = v.to_vec();
                heap.push(x);
                self.0 = Repr::Heap(heap);
            }
            Repr::Heap(v) => v.push(x),
        }
    }

    /// The axes as a `Vec`.
    pub fn into_vec(self) -> Vec<u64> {
        match self.0 {
            Repr::Inline { .. } => self.to_vec(),
            Repr::Heap(v) => v,
        }
    }
}

impl Default for Dims {
    fn default() -> Self {
        Self::new()
    }
}

impl Deref for Dims {
    type Target = [u64];

    fn deref(&self) -> &[u64] {
        match &self.0 {
            Repr::Inline { len, v } => &v[..usize::from(*len)],
            Repr::Heap(v) => v,
        }
    }
}

impl DerefMut for Dims {
    fn deref_mut(&mut self) -> &mut [u64] {
        match &mut self.0 {
            Repr::Inline { len, v } => &mut v[..usize::from(*len)],
            Repr::Heap(v) => v,
        }
    }
}

impl From<Vec<u64>> for Dims {
    fn from(v: Vec<u64>) -> Self {
        if v.len() <= INLINE_RANK { Self::from_slice(&v) } else { Self(Repr::Heap(v)) }
    }
}

impl From<&[u64]> for Dims {
    fn from(v: &[u64]) -> Self {
        Self::from_slice(v)
    }
}

impl<const N: usize> From<[u64; N]> for Dims {
    fn from(v: [u64; N]) -> Self {
        Self::from_slice(&v)
    }
}

impl From<Dims> for Vec<u64> {
    fn from(d: Dims) -> Self {
        d.into_vec()
    }
}

impl FromIterator<u64> for Dims {
    fn from_iter<I: IntoIterator<Item = u64>>(iter: I) -> Self {
        let mut v = [0; INLINE_RANK];
        let mut len = 0;
        let mut iter = iter.into_iter();
        for x in iter.by_ref() {
            if len == INLINE_RANK {
                let mut heap = v.to_vec();
                heap.push(x);
                heap.extend(iter);
                return Self(Repr::Heap(heap));
            }
            v[len] = x;
            len += 1;
        }
        // In range: at most INLINE_RANK.
        Self(Repr::Inline { len: len as u8, v })
    }
}

impl<'a> IntoIterator for &'a Dims {
    type Item = &'a u64;
    type IntoIter = std::slice::Iter<'a, u64>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl fmt::Debug for Dims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl PartialEq for Dims {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Dims {}

impl PartialEq<[u64]> for Dims {
    fn eq(&self, other: &[u64]) -> bool {
        **self == *other
    }
}

impl PartialEq<Vec<u64>> for Dims {
    fn eq(&self, other: &Vec<u64>) -> bool {
        **self == **other
    }
}

impl<const N: usize> PartialEq<[u64; N]> for Dims {
    fn eq(&self, other: &[u64; N]) -> bool {
        **self == *other
    }
}

impl PartialOrd for Dims {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Dims {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (**self).cmp(&**other)
    }
}

/// Hashes as the slice does, so equal `Dims` hash equally whichever way they are held.
impl Hash for Dims {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (**self).hash(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Every way of making `Dims` holds exactly the axes given, inline or not, and
        /// compares, orders and hashes as the slice does.
        #[test]
        fn dims_hold_their_axes_like_a_vec(
            a in proptest::collection::vec(any::<u64>(), 0..20),
            b in proptest::collection::vec(any::<u64>(), 0..20),
        ) {
            let made = [
                Dims::from(a.clone()),
                Dims::from_slice(&a),
                a.iter().copied().collect::<Dims>(),
            ];
            let hash = |d: &dyn Fn(&mut std::collections::hash_map::DefaultHasher)| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                d(&mut h);
                h.finish()
            };
            for d in &made {
                prop_assert_eq!(&**d, a.as_slice());
                prop_assert_eq!(d.clone().into_vec(), a.clone());
                prop_assert_eq!(d, &a);
                prop_assert_eq!(
                    hash(&|h| d.hash(h)),
                    hash(&|h| a.as_slice().hash(h))
                );
                let db = Dims::from(b.clone());
                prop_assert_eq!(d.cmp(&db), a.cmp(&b));
                prop_assert_eq!(d == &db, a == b);
            }
            let mut pushed = Dims::new();
            for &x in &a {
                pushed.push(x);
            }
            prop_assert_eq!(&pushed, &a);
            let mut m = Dims::from(a.clone());
            for x in m.iter_mut() {
                *x = x.wrapping_add(1);
            }
            let want: Vec<u64> = a.iter().map(|x| x.wrapping_add(1)).collect();
            prop_assert_eq!(m, want);
        }
    }
}
