//! Batch buffers: a fixed set allocated at construction, cycled through a
//! `gpu-schedule` [`Pool`] so that refilling a buffer waits for the release of the batch
//! that last used it (DESIGN.md §2 "gpu-schedule": no stage sees a cycled buffer
//! without its ordering).

use std::ptr::NonNull;
use std::sync::{Arc, Condvar, Mutex};

use gpu_schedule::{EdgeTable, Endpoint, HostBackend, Lease, Pool, PoolSpec};

use crate::error::{Error, Result, Unavailable};

const ACQUIRER: &str = "assemble";
const RELEASER: &str = "consumer";

/// One batch buffer: zeroed, 8-byte aligned so that any element type can be viewed in
/// place. On Linux it is its own anonymous mapping aligned to 2 MiB (zero pages, touched
/// lazily), so that its huge pages cover all of it and its rows start on whole cache
/// lines where their byte length allows (`cast::copy_out` streams whole lines).
#[derive(Debug)]
pub(crate) struct SlotBuf {
    ptr: NonNull<u64>,
    len: usize,
    /// Who frees the memory.
    owner: Owner,
}

#[derive(Debug)]
enum Owner {
    /// A `Box<[u64]>` of `len / 8` words at `ptr`.
    Boxed,
    /// A mapping of `len` bytes at `base` (the buffer starts inside it).
    #[cfg(target_os = "linux")]
    Mapped { base: usize, len: usize },
}

// SAFETY: the buffer is plain memory owned by this value; who may touch it when is
// governed by the pool's generation protocol (only the holder of the current lease).
unsafe impl Send for SlotBuf {}
// SAFETY: as above; shared references never access the bytes without a lease.
unsafe impl Sync for SlotBuf {}

impl SlotBuf {
    fn new(bytes: usize) -> Self {
        let len = bytes.max(1).next_multiple_of(8);
        #[cfg(target_os = "linux")]
        if let Some(b) = Self::mapped(len) {
            return b;
        }
        let b: Box<[u64]> = vec![0u64; len / 8].into_boxed_slice();
        // `Box::into_raw` never returns null.
        let ptr = NonNull::new(Box::into_raw(b).cast::<u64>()).unwrap_or(NonNull::dangling());
        huge_pages(ptr.as_ptr().cast::<u8>(), len);
        Self { ptr, len, owner: Owner::Boxed }
    }

    /// `len` bytes from a fresh anonymous mapping, at its first 2 MiB boundary; `None`
    /// when the mapping is refused (then the heap serves).
    #[cfg(target_os = "linux")]
    fn mapped(len: usize) -> Option<Self> {
        let map_len = len.checked_add(HUGE_PAGE)?;
        // SAFETY: a fresh private anonymous mapping: no address is passed, nothing else
        // refers to the memory it returns.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        let start = (base as usize).next_multiple_of(HUGE_PAGE);
        let ptr = NonNull::new(start as *mut u64)?;
        huge_pages(start as *mut u8, len);
        Some(Self { ptr, len, owner: Owner::Mapped { base: base as usize, len: map_len } })
    }

    fn len(&self) -> usize {
        self.len
    }
}

impl Drop for SlotBuf {
    fn drop(&mut self) {
        match self.owner {
            // SAFETY: `ptr`/`len` came from `Box::<[u64]>::into_raw` of `len / 8` words in
            // `new` and are freed only here.
            Owner::Boxed => unsafe {
                let words = std::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.len / 8);
                drop(Box::from_raw(words));
            },
            // SAFETY: the mapping `mapped` made, unmapped only here.
            #[cfg(target_os = "linux")]
            Owner::Mapped { base, len } => unsafe {
                libc::munmap(base as *mut libc::c_void, len);
            },
        }
    }
}

/// Huge pages for a batch buffer's whole 2 MiB pages, where the kernel offers them on
/// request (`transparent_hugepage` set to `madvise`, a common default): a batch's scatter
/// writes rows all over a buffer of hundreds of MiB, which with 4 KiB pages misses the
/// TLB on most rows, and its first touch faults once per 4 KiB instead of per 2 MiB.
/// Advice only: where it is refused the buffer works as before.
#[cfg(target_os = "linux")]
fn huge_pages(ptr: *mut u8, len: usize) {
    if let Some(r) = whole_huge_pages(ptr as usize, len) {
        // SAFETY: `r` lies inside the allocation (`whole_huge_pages`), which this value
        // owns; the advice changes how its pages are backed, never their contents.
        let _ =
            unsafe { libc::madvise(r.start as *mut libc::c_void, r.len(), libc::MADV_HUGEPAGE) };
    }
}

/// Bytes of a 2 MiB huge page.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
const HUGE_PAGE: usize = 2 << 20;

/// The whole 2 MiB pages inside `addr..addr + len` (`None` when there is none): nothing
/// outside the allocation is advised.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn whole_huge_pages(addr: usize, len: usize) -> Option<std::ops::Range<usize>> {
    let start = addr.checked_next_multiple_of(HUGE_PAGE)?;
    let end = addr.checked_add(len)? / HUGE_PAGE * HUGE_PAGE;
    (end > start).then_some(start..end)
}

#[cfg(not(target_os = "linux"))]
fn huge_pages(_: *mut u8, _: usize) {}

pub(crate) type SlotLease = Lease<HostBackend, SlotBuf>;

/// The batch buffers of a pipeline.
///
/// Besides the pool, a small held-flag table lets teardown wake a thread waiting for a
/// buffer: the pool's own wait cannot be interrupted once entered, so `acquire` first
/// waits here (interruptibly) until the slot's previous batch was released, and only then
/// enters the pool, whose wait is by then already satisfied.
#[derive(Debug)]
pub(crate) struct Slots {
    pool: Pool<HostBackend, SlotBuf>,
    held: Mutex<Held>,
    cv: Condvar,
}

#[derive(Debug)]
struct Held {
    held: Vec<bool>,
    closed: bool,
}

impl Slots {
    /// The number of buffers.
    pub(crate) fn count(&self) -> usize {
        crate::engine::lock(&self.held).held.len()
    }

    /// `n` buffers of `bytes` each.
    pub(crate) fn new(n: usize, bytes: usize) -> Result<Self> {
        let backend = Arc::new(HostBackend::new());
        let table = Arc::new(
            EdgeTable::new(backend, n)
                .map_err(|_| Error::BackendUnavailable { reason: Unavailable::BufferPool })?,
        );
        let spec = PoolSpec {
            name: "batch_buffers",
            acquirer: Endpoint::Host(ACQUIRER),
            releaser: Endpoint::Host(RELEASER),
        };
        let buffers = (0..n).map(|_| SlotBuf::new(bytes)).collect();
        let pool = Pool::new(&table, spec, buffers)
            .map_err(|_| Error::BackendUnavailable { reason: Unavailable::BufferPool })?;
        Ok(Self {
            pool,
            held: Mutex::new(Held { held: vec![false; n], closed: false }),
            cv: Condvar::new(),
        })
    }

    /// Waits until any buffer is free (preferring slot `id % n`), then leases it. Any
    /// free slot will do: a caller holding one old batch must not stall the pipeline
    /// while other buffers are free.
    ///
    /// # Errors
    /// `Closed` when the pipeline is being torn down.
    pub(crate) fn acquire(&self, id: u64) -> Result<SlotLease> {
        let n = self.pool.slots();
        let slot = {
            let mut h = self.held.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if h.closed {
                    return Err(Error::Closed);
                }
                let first = (id % n as u64) as usize;
                if let Some(s) = (0..n).map(|k| (first + k) % n).find(|&s| !h.held[s]) {
                    h.held[s] = true;
                    break s;
                }
                h = self.cv.wait(h).unwrap_or_else(|e| e.into_inner());
            }
        };
        self.pool.acquire_blocking(slot, ACQUIRER).map_err(|_| Error::Closed)
    }

    /// Returns a buffer.
    pub(crate) fn release(&self, lease: SlotLease) {
        let slot = lease.slot();
        // A release fails only when the lease is not this pool's current generation, which
        // the held flags above rule out; nothing waits on a failed release.
        let _ = self.pool.release_host(lease, RELEASER);
        let mut h = self.held.lock().unwrap_or_else(|e| e.into_inner());
        h.held[slot] = false;
        self.cv.notify_all();
    }

    /// Teardown: wakes every waiting `acquire`, which then answers `Closed`.
    pub(crate) fn close(&self) {
        let mut h = self.held.lock().unwrap_or_else(|e| e.into_inner());
        h.closed = true;
        self.cv.notify_all();
    }

    /// The leased buffer's bytes.
    pub(crate) fn bytes<'a>(&self, lease: &'a SlotLease) -> &'a [u8] {
        let b = lease.buffer();
        // SAFETY: the lease is the exclusive right to this buffer's current generation;
        // the jobs that wrote it finished before the batch was handed out.
        unsafe { std::slice::from_raw_parts(b.ptr.as_ptr().cast::<u8>(), b.len()) }
    }

    /// A writable view of the leased buffer for the batch's jobs.
    pub(crate) fn out_buf(&self, lease: &SlotLease) -> OutBuf {
        let b = lease.buffer();
        // SAFETY: as in `bytes`; the view lives only as long as the batch's jobs, which
        // finish before the lease is handed to the caller.
        let s = unsafe { std::slice::from_raw_parts_mut(b.ptr.as_ptr().cast::<u8>(), b.len()) };
        OutBuf::new(s)
    }
}

/// A batch buffer shared by the jobs that fill it.
#[derive(Debug)]
pub(crate) struct OutBuf {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: `OutBuf` is a view of a buffer owned by the batch context (which outlives every
// job); jobs write disjoint byte ranges of it (see the module docs), so sharing the view
// across threads cannot create a data race.
unsafe impl Send for OutBuf {}
// SAFETY: as above: concurrent users only ever touch disjoint ranges.
unsafe impl Sync for OutBuf {}

impl OutBuf {
    pub(crate) fn new(buf: &mut [u8]) -> Self {
        Self { ptr: buf.as_mut_ptr(), len: buf.len() }
    }

    /// Bytes of the buffer.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// A mutable view of `off..off + n`.
    ///
    /// # Safety
    /// No other live view may overlap `off..off + n` (the planner's exactly-once property
    /// guarantees this for placements), and the underlying buffer must still be alive.
    // Handing out `&mut` from `&self` is the point: jobs share the view and the
    // exclusivity of each range is the caller's contract (see # Safety).
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn range(&self, off: usize, n: usize) -> &mut [u8] {
        let end = off.checked_add(n).filter(|&e| e <= self.len);
        // A bad box is a bug in the planner, never a reason to write out of bounds.
        assert!(end.is_some(), "batch write {off}+{n} outside the {}-byte buffer", self.len);
        // SAFETY: in bounds (checked above); exclusivity is the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(off), n) }
    }
}

#[cfg(test)]
mod tests {
    use super::{HUGE_PAGE, whole_huge_pages};

    /// Only whole 2 MiB pages inside the buffer are advised, none when there is none.
    #[test]
    fn the_advised_range_is_the_buffers_whole_huge_pages() {
        let h = HUGE_PAGE;
        assert_eq!(whole_huge_pages(h, 3 * h), Some(h..4 * h), "aligned: all of it");
        assert_eq!(whole_huge_pages(h + 16, 3 * h), Some(2 * h..4 * h));
        assert_eq!(whole_huge_pages(h - 16, 2 * h + 32), Some(h..3 * h));
        assert_eq!(whole_huge_pages(h + 16, 2 * h - 32), None, "no whole page inside");
        assert_eq!(whole_huge_pages(16, 64 << 10), None, "a small buffer");
        assert_eq!(whole_huge_pages(usize::MAX - 8, 4), None);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod linux_tests {
    use super::SlotBuf;

    /// The flags (`VmFlags` of `/proc/self/smaps`) of the mapping holding `addr`.
    fn vm_flags(addr: usize) -> Option<String> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        for line in smaps.lines() {
            let range = line.split_whitespace().next().and_then(|r| r.split_once('-'));
            if let Some((lo, hi)) = range
                && let (Ok(lo), Ok(hi)) =
                    (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = (lo..hi).contains(&addr);
            } else if inside && let Some(flags) = line.strip_prefix("VmFlags:") {
                return Some(flags.trim().to_owned());
            }
        }
        None
    }

    /// A batch buffer's whole 2 MiB pages are advised for huge pages (`hg`), so that its
    /// scatter misses the TLB less. (Which pages are advised: the test above; a small
    /// buffer's flags are not checked here, as its heap page may hold an earlier test's
    /// freed, advised buffer.)
    #[test]
    fn batch_buffers_ask_for_huge_pages() {
        let b = SlotBuf::new(16 << 20);
        assert_eq!(b.ptr.as_ptr() as usize % super::HUGE_PAGE, 0, "aligned to a huge page");
        let inner = b.ptr.as_ptr() as usize + 4096;
        let flags = vm_flags(inner).expect("the buffer is mapped");
        assert!(flags.split(' ').any(|f| f == "hg"), "flags {flags:?}");
    }
}
