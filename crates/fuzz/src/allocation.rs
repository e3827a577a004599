//! The allocation cap: a counting global allocator that remembers, per thread, the
//! largest single allocation request, and the cap that no input may make a parser exceed.
//!
//! The fuzz binary (and this crate's unit tests) install [`CountingAlloc`] as the
//! `#[global_allocator]`. It only counts; every request still goes to the system
//! allocator. Allocations made inside C libraries (libzstd's windows and contexts) do not
//! pass through it and are not counted.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The most one input may make a parser request in a single allocation: 64 MiB.
///
/// A parser sizes its buffers from lengths written in the input (a blosc header's
/// `nbytes`, a shard index entry, a zstd content size). A forged length must never
/// allocate beyond this: every legitimate size in the fuzz targets is bounded by the
/// input (at most [`crate::mutate::MAX_INPUT_LEN`] bytes), by a fixed chunk shape (the
/// largest decodes to 16 KiB), or by a decoder's stage cap (32× the input plus 1 MiB,
/// under 4 MiB here), with the harnesses' own buffers limited to 16 MiB. So anything
/// above 64 MiB is a length taken on trust.
pub const CAP: usize = 64 << 20;

thread_local! {
    // A const-initialized Cell has no destructor, so reading it from the allocator never
    // allocates and never fails during thread teardown.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|l| {
        if size > l.get() {
            l.set(size);
        }
    });
}

/// A global allocator that records the largest single request of each thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAlloc;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s guarantees hold; the bookkeeping touches only a thread-local `Cell`.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded unchanged; the caller upholds `alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; `ptr` came from `System` through this allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: forwarded unchanged; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `f` and returns its result with the largest single allocation it requested on
/// this thread (0 if none, or if [`CountingAlloc`] is not the global allocator).
pub fn largest_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let outer = LARGEST.with(|l| l.replace(0));
    let r = f();
    let largest = LARGEST.with(|l| l.replace(outer.max(l.get())));
    (r, largest)
}

/// Whether [`CountingAlloc`] is the global allocator of this program (the cap can only
/// be enforced if it is).
pub fn is_counting() -> bool {
    let ((), largest) = largest_during(|| {
        let v: Vec<u8> = Vec::with_capacity(4096);
        std::hint::black_box(&v);
    });
    largest >= 4096
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_binary_counts() {
        assert!(is_counting());
    }

    #[test]
    fn largest_request_is_reported_and_nesting_keeps_the_outer_peak() {
        let ((), outer) = largest_during(|| {
            let ((), inner) = largest_during(|| {
                std::hint::black_box(vec![1u8; 100_000]);
            });
            assert_eq!(inner, 100_000);
            std::hint::black_box(vec![1u8; 10]);
        });
        assert!(outer >= 100_000, "{outer}");
    }

    #[test]
    fn realloc_growth_counts_the_new_size() {
        let ((), largest) = largest_during(|| {
            let mut v = vec![0u8; 16];
            v.resize(1 << 20, 0);
            std::hint::black_box(&v);
        });
        assert!(largest >= 1 << 20, "{largest}");
    }
}
