//! The `Backend` abstraction: streams, events, generation counters and memory, with a
//! `host` implementation (threads) and, behind the `cuda` feature, a CUDA one.

#[cfg(feature = "cuda")]
pub mod cuda;
pub mod host;

use std::fmt;
use std::time::Duration;

use crate::error::Result;
use crate::sync::{Arc, AtomicU64, Ordering};

/// Host work submitted to a stream: it runs after everything submitted to the stream before
/// it, and everything submitted after waits for it. An `Err` is kept by the stream and
/// returned by the next [`Backend::synchronize`].
pub type HostTask = Box<dyn FnOnce() -> Result<()> + Send + 'static>;

/// Where ordering lives and where buffers are, for one device (or the host).
///
/// Every method that takes a stream only *enqueues*: it returns once the operation is in
/// the stream's order, not once it has run. Waits with `host_` in their name block the
/// calling thread. Counters are monotonic 64-bit values: publishing a smaller value than
/// the current one is an error, so a late publish can never move one backwards.
pub trait Backend: Send + Sync + fmt::Debug + 'static {
    /// An in-order queue of work.
    type Stream: Send + Sync + fmt::Debug;
    /// A marker recorded into a stream; waits refer to its most recent record.
    type Event: Send + Sync + fmt::Debug;
    /// A monotonic 64-bit value that streams and the host can publish and wait on.
    type Counter: Send + Sync + fmt::Debug;
    /// Memory the device computes on (host memory on the host backend). Cheap to clone:
    /// clones refer to the same bytes.
    type DeviceMem: Clone + Send + Sync + fmt::Debug;
    /// Page-locked host memory that the CPU reads and writes at full speed (never
    /// write-combined). Cheap to clone: clones refer to the same bytes.
    type PinnedMem: Clone + Send + Sync + fmt::Debug;

    /// A short name: `"host"` or `"cuda"`.
    fn name(&self) -> &'static str;

    /// Whether streams can wait on and write counters themselves. When they cannot, a
    /// cross-stream rule that needs a counter must be kept by the host, and the scheduler
    /// runs at pipeline depth 1.
    fn device_counters(&self) -> bool;

    /// Creates a stream.
    ///
    /// # Errors
    /// A driver error.
    fn create_stream(&self, name: &'static str) -> Result<Self::Stream>;

    /// Blocks until everything submitted to `stream` has run.
    ///
    /// # Errors
    /// The first error a task of this stream returned since the last synchronize, or a
    /// driver error.
    fn synchronize(&self, stream: &Self::Stream) -> Result<()>;

    /// Enqueues host work in stream order.
    ///
    /// # Errors
    /// [`crate::Error::StreamClosed`] or a driver error.
    fn enqueue_host(&self, stream: &Self::Stream, task: HostTask) -> Result<()>;

    /// Creates an event with nothing recorded.
    ///
    /// # Errors
    /// A driver error.
    fn create_event(&self) -> Result<Self::Event>;

    /// Records `event` at the current end of `stream`.
    ///
    /// # Errors
    /// A driver error.
    fn record_event(&self, event: &Self::Event, stream: &Self::Stream) -> Result<()>;

    /// Makes `stream` wait for the most recent record of `event`. As on a GPU, waiting on
    /// an event never recorded does nothing; [`crate::EdgeTable`] turns that into an error.
    ///
    /// # Errors
    /// A driver error.
    fn stream_wait_event(
        &self,
        stream: &Self::Stream,
        event: &Self::Event,
        meter: &Arc<StallMeter>,
    ) -> Result<()>;

    /// Blocks the calling thread until the most recent record of `event` has completed.
    ///
    /// # Errors
    /// A driver error.
    fn host_wait_event(&self, event: &Self::Event) -> Result<()>;

    /// Creates a counter at zero.
    ///
    /// # Errors
    /// A driver error.
    fn create_counter(&self, name: &'static str) -> Result<Self::Counter>;

    /// The counter's value as the host sees it now.
    fn counter_value(&self, counter: &Self::Counter) -> u64;

    /// Publishes `value` from the host, now.
    ///
    /// # Errors
    /// [`crate::Error::CounterBackwards`] when `value` is below the current value.
    fn publish_host(&self, counter: &Self::Counter, value: u64) -> Result<()>;

    /// Publishes `value` when `stream` reaches this point.
    ///
    /// # Errors
    /// A driver error; a backwards publish surfaces from [`Backend::synchronize`].
    fn publish_on_stream(
        &self,
        counter: &Self::Counter,
        value: u64,
        stream: &Self::Stream,
    ) -> Result<()>;

    /// Makes `stream` wait until the counter is at least `value`.
    ///
    /// # Errors
    /// A driver error.
    fn stream_wait_counter(
        &self,
        stream: &Self::Stream,
        counter: &Self::Counter,
        value: u64,
        meter: &Arc<StallMeter>,
    ) -> Result<()>;

    /// Blocks the calling thread until the counter is at least `value`.
    ///
    /// # Errors
    /// A driver error.
    fn host_wait_counter(&self, counter: &Self::Counter, value: u64) -> Result<()>;

    /// Allocates `bytes` of device memory (contents unspecified).
    ///
    /// # Errors
    /// Out of memory or a driver error.
    fn alloc_device(&self, bytes: usize) -> Result<Self::DeviceMem>;

    /// Allocates `bytes` of page-locked host memory, zeroed.
    ///
    /// # Errors
    /// Out of memory or a driver error.
    fn alloc_pinned(&self, bytes: usize) -> Result<Self::PinnedMem>;

    /// Length of a device buffer in bytes.
    fn device_len(&self, mem: &Self::DeviceMem) -> usize;

    /// Length of a pinned buffer in bytes.
    fn pinned_len(&self, mem: &Self::PinnedMem) -> usize;

    /// Fills every whole 32-bit word of `dst` with `value` (native byte order), in stream order.
    ///
    /// # Errors
    /// A driver error.
    fn fill_u32(&self, stream: &Self::Stream, dst: &Self::DeviceMem, value: u32) -> Result<()>;

    /// Copies all of `src` to the start of `dst`, in stream order.
    ///
    /// # Errors
    /// [`crate::Error::BufferTooSmall`] when `dst` is shorter than `src`; a driver error.
    fn copy_to_pinned(
        &self,
        stream: &Self::Stream,
        dst: &Self::PinnedMem,
        src: &Self::DeviceMem,
    ) -> Result<()>;

    /// Copies all of `src` to the start of `dst`, in stream order.
    ///
    /// # Errors
    /// [`crate::Error::BufferTooSmall`] when `dst` is shorter than `src`; a driver error.
    fn copy_to_device(
        &self,
        stream: &Self::Stream,
        dst: &Self::DeviceMem,
        src: &Self::PinnedMem,
    ) -> Result<()>;

    /// Runs `f` on the bytes of a pinned buffer. Ordering against streams that write it is
    /// the caller's (that is what pools and edges are for).
    fn read_pinned<R>(&self, mem: &Self::PinnedMem, f: impl FnOnce(&[u8]) -> R) -> R;

    /// Runs `f` on the bytes of a pinned buffer, mutably. Ordering as for [`Backend::read_pinned`].
    fn write_pinned<R>(&self, mem: &Self::PinnedMem, f: impl FnOnce(&mut [u8]) -> R) -> R;
}

/// Counts waits on one edge and the time they stalled. Host-side waits are timed
/// exactly; stream-side waits are timed where the backend can see them (the host
/// backend's workers), and only counted on CUDA.
#[derive(Debug, Default)]
pub struct StallMeter {
    waits: AtomicU64,
    stall_ns: AtomicU64,
}

impl StallMeter {
    /// Adds one wait that stalled for `stall`.
    pub fn add(&self, stall: Duration) {
        self.waits.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(stall.as_nanos()).unwrap_or(u64::MAX);
        self.stall_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Adds stall time to a wait already counted.
    pub fn add_stall(&self, stall: Duration) {
        let ns = u64::try_from(stall.as_nanos()).unwrap_or(u64::MAX);
        self.stall_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Counts one wait whose stall is not measured.
    pub fn count(&self) {
        self.waits.fetch_add(1, Ordering::Relaxed);
    }

    /// Waits counted so far.
    pub fn waits(&self) -> u64 {
        self.waits.load(Ordering::Relaxed)
    }

    /// Total stall so far.
    pub fn stall(&self) -> Duration {
        Duration::from_nanos(self.stall_ns.load(Ordering::Relaxed))
    }
}
