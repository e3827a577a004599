//! Batch buffers: a fixed set allocated at construction, cycled through a
//! `gpu-schedule` [`Pool`] so that refilling a buffer waits for the release of the batch
//! that last used it (DESIGN.md §2 "gpu-schedule": no stage sees a cycled buffer
//! without its ordering).
//!
//! The pages of mapped buffers are faulted in by a background thread ([`Populate`]) from
//! the first buffer's release on (the first batch was delivered), so that the first plans
//! written into each buffer do not pay the kernel's page zeroing on the decode workers
//! (docs/PERFORMANCE.md, tenth session: on the H200 the host engine's cached
//! `default-long` ran 6.4–8.5 Gvox/s with 9 warm-up batches, its buffers first written
//! inside the timed window, and 13.2–17.2 with 30; on the dev machine populating gained
//! 7–16% with 9).

use std::ops::Range;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

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

    /// The buffer's bytes as an address range where it is its own mapping (what a
    /// [`Populate`] faults in; a heap buffer's pages are left to the allocator).
    fn mapped_range(&self) -> Option<Range<usize>> {
        match self.owner {
            Owner::Boxed => None,
            #[cfg(target_os = "linux")]
            Owner::Mapped { .. } => {
                let start = self.ptr.as_ptr() as usize;
                Some(start..start + self.len)
            }
        }
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
    /// Faults in the buffers' pages. The first field, so that it drops (stops and joins
    /// its thread) before `pool` unmaps the buffers: the thread never advises an address
    /// range that is no longer theirs.
    populate: Populate,
    pool: Pool<HostBackend, SlotBuf>,
    held: Mutex<Held>,
    cv: Condvar,
}

/// A background thread that faults in the pages of the batch buffers
/// (`MADV_POPULATE_WRITE`, Linux 5.14 and later: the pages become present and writable
/// with their contents unchanged, so it may run while jobs write the same buffers), one
/// [`POPULATE_STEP`] at a time, in the order the buffers are first needed in full
/// ([`populate_order`]). It starts at the first buffer's release (the first batch was
/// delivered and dropped), so that it does not take cores or memory bandwidth from the
/// first batch: on the 2-core dev machine populating from construction made the first
/// `default-long` batch 0.3–0.6 s later. Where the kernel refuses the advice, or the
/// thread cannot be spawned, jobs fault the pages in as they write them, as without it.
#[derive(Debug)]
struct Populate {
    gate: Arc<PopulateGate>,
    thread: Option<JoinHandle<usize>>,
}

/// When the populate thread may go, and whether it must stop.
#[derive(Debug, Default)]
struct PopulateGate {
    state: Mutex<GateState>,
    cv: Condvar,
    /// `state.go` already set (so a release takes no lock after the first).
    went: AtomicBool,
}

#[derive(Debug, Default)]
struct GateState {
    go: bool,
    stop: bool,
}

impl PopulateGate {
    fn set(&self, f: impl FnOnce(&mut GateState)) {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()));
        self.cv.notify_all();
    }

    fn stopped(&self) -> bool {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).stop
    }

    /// Waits until the thread may go (`true`) or must stop (`false`).
    fn wait(&self) -> bool {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let st = self.cv.wait_while(st, |s| !s.go && !s.stop).unwrap_or_else(|e| e.into_inner());
        !st.stop
    }
}

/// Bytes advised per `madvise` call (one huge page): a stop waits for at most one step,
/// and the address-space lock the advice holds is never held long while jobs fault in
/// pages or map memory of their own.
const POPULATE_STEP: usize = 2 << 20;

impl Populate {
    fn start(ranges: Vec<Range<usize>>) -> Self {
        let gate = Arc::new(PopulateGate::default());
        let thread = if ranges.is_empty() {
            None
        } else {
            let g = Arc::clone(&gate);
            std::thread::Builder::new()
                .name("damacy-populate".into())
                .spawn(move || if g.wait() { populate(&ranges, &|| g.stopped()) } else { 0 })
                .ok()
        };
        Self { gate, thread }
    }

    /// Lets the thread start (from the first release on; later calls cost an atomic load).
    fn go(&self) {
        if !self.gate.went.swap(true, Ordering::AcqRel) {
            self.gate.set(|s| s.go = true);
        }
    }

    /// Waits for the thread to finish; the bytes it advised (tests).
    #[cfg(test)]
    fn finish(&mut self) -> usize {
        self.thread.take().map_or(0, |t| t.join().unwrap_or(0))
    }
}

impl Drop for Populate {
    /// Stops the thread and waits for it (at most one step).
    fn drop(&mut self) {
        self.gate.set(|s| s.stop = true);
        if let Some(t) = self.thread.take() {
            // A panic there (none is expected) leaves the pages to the jobs.
            let _ = t.join();
        }
    }
}

/// The buffers' ranges in the order they are first needed in full: the first plan goes
/// into buffer 0 (its jobs fault in what it writes), the next plans into buffers 1, 2,
/// ..., and only then is buffer 0 written again, by a plan that may be larger than the
/// first (a first plan is one batch).
fn populate_order(mut ranges: Vec<Range<usize>>) -> Vec<Range<usize>> {
    if !ranges.is_empty() {
        ranges.rotate_left(1);
    }
    ranges
}

/// Faults in `ranges` step by step until done, refused, or `stop()`. Returns the bytes
/// advised.
fn populate(ranges: &[Range<usize>], stop: &dyn Fn() -> bool) -> usize {
    let mut done = 0;
    for r in ranges {
        let mut at = r.start;
        while at < r.end {
            if stop() {
                return done;
            }
            let n = POPULATE_STEP.min(r.end - at);
            if !populate_write(at, n) {
                return done;
            }
            done += n;
            at += n;
        }
    }
    done
}

/// `MADV_POPULATE_WRITE` over `addr..addr + len`; whether the kernel took it.
#[cfg(target_os = "linux")]
fn populate_write(addr: usize, len: usize) -> bool {
    // SAFETY: the range lies inside a mapping that a live `SlotBuf` owns (`Slots` stops
    // this thread before its buffers drop); the advice faults pages in without changing
    // their contents, so it cannot race with the jobs writing them.
    unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_POPULATE_WRITE) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn populate_write(_: usize, _: usize) -> bool {
    false
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
        let buffers: Vec<SlotBuf> = (0..n).map(|_| SlotBuf::new(bytes)).collect();
        let ranges = populate_order(buffers.iter().filter_map(SlotBuf::mapped_range).collect());
        let pool = Pool::new(&table, spec, buffers)
            .map_err(|_| Error::BackendUnavailable { reason: Unavailable::BufferPool })?;
        // Only once the pool owns the buffers, which `Self` keeps until `populate` stopped.
        let populate = Populate::start(ranges);
        Ok(Self {
            populate,
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
        drop(h);
        self.populate.go();
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
    use super::{HUGE_PAGE, populate_order, whole_huge_pages};

    /// Buffers are populated in the order plans first fill them: 1, 2, ..., then 0.
    #[test]
    fn buffers_are_populated_from_the_second_on_and_the_first_last() {
        assert_eq!(populate_order(vec![0..1, 1..2, 2..3]), vec![1..2, 2..3, 0..1]);
        let one: Vec<std::ops::Range<usize>> = std::iter::once(5..9).collect();
        assert_eq!(populate_order(one.clone()), one);
        assert_eq!(populate_order(Vec::new()), Vec::<std::ops::Range<usize>>::new());
    }

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
    use super::{SlotBuf, Slots, populate};

    /// Which 4 KiB pages of `r` are resident (`mincore`).
    fn resident(r: std::ops::Range<usize>) -> Vec<bool> {
        let mut v = vec![0u8; r.len().div_ceil(4096)];
        // SAFETY: `r` is a live mapping of the caller's (page-aligned: buffers start on a
        // 2 MiB boundary); `v` holds one byte per page.
        let rc = unsafe { libc::mincore(r.start as *mut libc::c_void, r.len(), v.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore failed");
        v.iter().map(|b| b & 1 == 1).collect()
    }

    /// Whether this kernel takes `MADV_POPULATE_WRITE` (5.14 and later).
    fn kernel_populates() -> bool {
        let b = SlotBuf::new(1 << 20);
        let r = b.mapped_range().expect("a mapped buffer");
        // SAFETY: `b`'s own mapping.
        unsafe {
            libc::madvise(r.start as *mut libc::c_void, r.len(), libc::MADV_POPULATE_WRITE) == 0
        }
    }

    /// From the first release on, the background thread faults in every page of every
    /// buffer (the first included, last) without changing a byte, so that no job's first
    /// write pays the zeroing.
    #[test]
    fn every_page_of_the_batch_buffers_is_faulted_in_and_stays_zero() {
        let bytes = 6 << 20;
        let mut slots = Slots::new(3, bytes).expect("buffers");
        let first = slots.acquire(0).expect("a free buffer");
        slots.release(first);
        let advised = slots.populate.finish();
        let leases: Vec<_> = (0..3).map(|i| slots.acquire(i).expect("a free buffer")).collect();
        for lease in &leases {
            let b = lease.buffer();
            let r = b.mapped_range().expect("mapped");
            let pages = resident(r);
            if kernel_populates() {
                assert!(pages.iter().all(|&p| p), "pages not faulted in: {pages:?}");
            } else {
                assert!(!pages.iter().any(|&p| p), "nothing is faulted in without the advice");
            }
            assert!(slots.bytes(lease).iter().all(|&x| x == 0), "populating wrote bytes");
        }
        assert_eq!(advised, if kernel_populates() { 3 * bytes } else { 0 });
    }

    /// Nothing is populated before the first release: a pipeline torn down before its
    /// first batch came back leaves its buffers untouched.
    #[test]
    fn nothing_is_populated_before_the_first_release() {
        let mut slots = Slots::new(2, 4 << 20).expect("buffers");
        let held = slots.acquire(1).expect("a free buffer");
        slots.populate.gate.set(|s| s.stop = true);
        assert_eq!(slots.populate.finish(), 0, "populated before any release");
        let r = held.buffer().mapped_range().expect("mapped");
        assert!(!resident(r).iter().any(|&p| p), "pages faulted in before any release");
        slots.release(held);
    }

    /// A stop (the pipeline's teardown) ends populating before the next step.
    #[test]
    fn a_stopped_populate_faults_in_nothing() {
        let b = SlotBuf::new(8 << 20);
        let r = b.mapped_range().expect("mapped");
        assert_eq!(populate(std::slice::from_ref(&r), &|| true), 0);
        assert!(!resident(r.clone()).iter().any(|&p| p), "a stopped populate touched pages");
        if kernel_populates() {
            assert_eq!(populate(std::slice::from_ref(&r), &|| false), 8 << 20);
            assert!(resident(r).iter().all(|&p| p));
        }
    }

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
