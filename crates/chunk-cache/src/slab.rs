//! Ranges of one fixed allocation (the CUDA engine's device cache: one `cuMemAlloc` of
//! `chunk_cache_bytes`), handed out as [`Block`]s that give their range back when dropped.
//!
//! First fit over a free list ordered by offset, with neighbours merged on free, so a slab
//! whose blocks are all one size (a dataset of one chunk shape) never fragments. The
//! cache's byte budget counts each value at its [`Slab::rounded`] size, so a cache at its
//! budget holds no more than the slab; an allocation can still fail when blocks of mixed
//! sizes leave the free bytes in pieces, and the caller then does without (the chunk is
//! simply not cached).

use std::collections::BTreeMap;
use std::fmt;

use crate::sync::{Arc, Mutex, lock};

/// A fixed range `[0, len)` that [`Block`]s are carved from.
pub struct Slab {
    len: u64,
    align: u64,
    /// Free ranges: offset → length, never adjacent (merged on free).
    free: Mutex<BTreeMap<u64, u64>>,
}

impl fmt::Debug for Slab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slab").field("len", &self.len).field("align", &self.align).finish()
    }
}

/// A range of a [`Slab`], free again when dropped.
pub struct Block {
    slab: Arc<Slab>,
    offset: u64,
    len: u64,
}

impl fmt::Debug for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Block").field("offset", &self.offset).field("len", &self.len).finish()
    }
}

impl Slab {
    /// A slab of `len` bytes handing out blocks aligned to `align` (a power of two; 1 for
    /// none).
    pub fn new(len: u64, align: u64) -> Arc<Self> {
        let align = align.max(1).next_power_of_two();
        let len = len / align * align;
        let mut free = BTreeMap::new();
        if len > 0 {
            free.insert(0, len);
        }
        Arc::new(Self { len, align, free: Mutex::new(free) })
    }

    /// Bytes of the slab.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the slab has no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes a value of `bytes` takes: rounded up to the alignment (`None` on
    /// overflow).
    pub fn rounded(&self, bytes: u64) -> Option<u64> {
        Some(bytes.max(1).checked_add(self.align - 1)? / self.align * self.align)
    }

    /// Free bytes now (in however many pieces).
    pub fn free_bytes(&self) -> u64 {
        lock(&self.free).values().sum()
    }

    /// A block of `slab` of at least `bytes` (rounded), the first free range that holds
    /// it; `None` when none does. (An associated function: loom's `Arc` cannot be a
    /// method receiver.)
    pub fn alloc(slab: &Arc<Self>, bytes: u64) -> Option<Block> {
        let len = slab.rounded(bytes)?;
        let mut free = lock(&slab.free);
        let (&at, &have) = free.iter().find(|&(_, &l)| l >= len)?;
        free.remove(&at);
        if have > len {
            free.insert(at + len, have - len);
        }
        Some(Block { slab: Arc::clone(slab), offset: at, len })
    }

    fn release(&self, offset: u64, len: u64) {
        let mut free = lock(&self.free);
        let (mut start, mut end) = (offset, offset + len);
        // Merge with the free range just before and the one just after.
        if let Some((&o, &l)) = free.range(..offset).next_back()
            && o + l == offset
        {
            free.remove(&o);
            start = o;
        }
        if let Some(&l) = free.get(&end) {
            free.remove(&end);
            end += l;
        }
        free.insert(start, end - start);
    }
}

impl Block {
    /// Byte offset of the block in its slab.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes of the block (the requested size, rounded up to the slab's alignment).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the block has no bytes (never: a block holds at least one aligned unit).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        self.slab.release(self.offset, self.len);
    }
}

#[cfg(all(test, not(damacy_loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn blocks_are_aligned_disjoint_and_freed_ranges_merge() {
        let slab = Slab::new(1000, 256);
        assert_eq!(slab.len(), 768, "whole aligned units only");
        let a = Slab::alloc(&slab, 1).expect("a");
        let b = Slab::alloc(&slab, 300).expect("b");
        assert_eq!((a.offset(), a.len(), b.offset(), b.len()), (0, 256, 256, 512));
        assert!(Slab::alloc(&slab, 1).is_none(), "full");
        drop(a);
        assert!(Slab::alloc(&slab, 257).is_none(), "256 free bytes hold no 512-byte block");
        drop(b);
        assert_eq!(slab.free_bytes(), 768);
        let c = Slab::alloc(&slab, 768).expect("merged back into one range");
        assert_eq!(c.offset(), 0);
    }

    proptest! {
        /// Any sequence of allocations and frees: live blocks never overlap, stay inside
        /// the slab, and free bytes + live bytes = the slab; once all are dropped the
        /// slab is one range again.
        #[test]
        fn live_blocks_never_overlap(ops in proptest::collection::vec((0u64..5000, any::<bool>()), 1..200)) {
            let slab = Slab::new(1 << 16, 64);
            let mut live: Vec<Block> = Vec::new();
            for (bytes, free_one) in ops {
                if free_one && !live.is_empty() {
                    let i = (bytes as usize) % live.len();
                    live.swap_remove(i);
                } else if let Some(b) = Slab::alloc(&slab, bytes) {
                    prop_assert_eq!(b.offset() % 64, 0);
                    prop_assert!(b.len() >= bytes && b.offset() + b.len() <= slab.len());
                    live.push(b);
                }
                let mut spans: Vec<(u64, u64)> = live.iter().map(|b| (b.offset(), b.offset() + b.len())).collect();
                spans.sort_unstable();
                for w in spans.windows(2) {
                    prop_assert!(w[0].1 <= w[1].0, "overlap {:?}", w);
                }
                let used: u64 = live.iter().map(Block::len).sum();
                prop_assert_eq!(used + slab.free_bytes(), slab.len());
            }
            live.clear();
            prop_assert!(Slab::alloc(&slab, slab.len()).is_some(), "one range again");
        }
    }
}
