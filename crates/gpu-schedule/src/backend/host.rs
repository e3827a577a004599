//! The host backend: a worker thread per stream runs submitted work in order; events are
//! completion flags; counters are a mutex-guarded value with a condition variable; "device"
//! memory is host memory.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use super::{Backend, HostTask, StallMeter};
use crate::error::{Error, Result};
use crate::sync::{Arc, Condvar, Mutex, lock, thread, wait_until};

/// The host backend. Stateless: every resource carries its own synchronization.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostBackend;

impl HostBackend {
    /// Creates the host backend.
    pub fn new() -> Self {
        Self
    }
}

/// A stream: one worker thread draining a FIFO of tasks.
#[derive(Debug)]
pub struct HostStream {
    shared: Arc<StreamShared>,
    worker: Option<thread::JoinHandle<()>>,
}

#[derive(Debug)]
struct StreamShared {
    name: &'static str,
    state: Mutex<StreamState>,
    work: Condvar,
    done: Condvar,
}

struct StreamState {
    tasks: VecDeque<HostTask>,
    closed: bool,
    submitted: u64,
    completed: u64,
    first_error: Option<Error>,
}

impl std::fmt::Debug for StreamState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamState")
            .field("queued", &self.tasks.len())
            .field("closed", &self.closed)
            .field("submitted", &self.submitted)
            .field("completed", &self.completed)
            .field("first_error", &self.first_error)
            .finish()
    }
}

impl HostStream {
    fn new(name: &'static str) -> Self {
        let shared = Arc::new(StreamShared {
            name,
            state: Mutex::new(StreamState {
                tasks: VecDeque::new(),
                closed: false,
                submitted: 0,
                completed: 0,
                first_error: None,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
        });
        let s = Arc::clone(&shared);
        let worker = thread::spawn(move || run_stream(&s));
        Self { shared, worker: Some(worker) }
    }

    /// The stream's name.
    pub fn name(&self) -> &'static str {
        self.shared.name
    }

    fn submit(&self, task: HostTask) -> Result<()> {
        let mut st = lock(&self.shared.state);
        if st.closed {
            return Err(Error::StreamClosed { stream: self.shared.name });
        }
        st.submitted += 1;
        st.tasks.push_back(task);
        drop(st);
        self.shared.work.notify_one();
        Ok(())
    }

    fn synchronize(&self) -> Result<()> {
        let st = lock(&self.shared.state);
        let target = st.submitted;
        let mut st = wait_until(&self.shared.done, st, |s| s.completed >= target);
        match st.first_error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn run_stream(shared: &StreamShared) {
    loop {
        let st = lock(&shared.state);
        let mut st = wait_until(&shared.work, st, |s| s.closed || !s.tasks.is_empty());
        let Some(task) = st.tasks.pop_front() else {
            return;
        };
        drop(st);
        // A panicking task must not kill the worker: later tasks (and synchronize) would
        // then wait forever. It becomes the stream's error instead.
        let outcome = catch_unwind(AssertUnwindSafe(task))
            .unwrap_or(Err(Error::StreamTaskPanicked { stream: shared.name }));
        let mut st = lock(&shared.state);
        st.completed += 1;
        if let Err(e) = outcome {
            st.first_error.get_or_insert(e);
        }
        drop(st);
        shared.done.notify_all();
    }
}

impl Drop for HostStream {
    fn drop(&mut self) {
        // Work already queued still runs: dropping a stream is a drain, never a cancel,
        // so a release queued before teardown still publishes.
        lock(&self.shared.state).closed = true;
        self.shared.work.notify_all();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// An event: the number of records made and the number completed.
#[derive(Debug, Clone)]
pub struct HostEvent(Arc<Flag>);

#[derive(Debug, Default)]
struct Flag {
    state: Mutex<EventState>,
    cv: Condvar,
}

#[derive(Debug, Default, Clone, Copy)]
struct EventState {
    recorded: u64,
    completed: u64,
}

impl Flag {
    fn wait_for(&self, target: u64) {
        let st = lock(&self.state);
        drop(wait_until(&self.cv, st, |s| s.completed >= target));
    }
}

/// A monotonic counter with a condition variable for waiters.
#[derive(Debug, Clone)]
pub struct HostCounter(Arc<CounterShared>);

#[derive(Debug)]
struct CounterShared {
    name: &'static str,
    value: Mutex<u64>,
    cv: Condvar,
}

impl HostCounter {
    /// A counter at zero.
    pub fn new(name: &'static str) -> Self {
        Self(Arc::new(CounterShared { name, value: Mutex::new(0), cv: Condvar::new() }))
    }

    /// The current value.
    pub fn value(&self) -> u64 {
        *lock(&self.0.value)
    }

    /// Sets the value and wakes waiters.
    ///
    /// # Errors
    /// [`Error::CounterBackwards`] when `value` is below the current value (the counter
    /// keeps its current value).
    pub fn publish(&self, value: u64) -> Result<()> {
        let mut v = lock(&self.0.value);
        if value < *v {
            return Err(Error::CounterBackwards {
                counter: self.0.name,
                current: *v,
                published: value,
            });
        }
        *v = value;
        drop(v);
        self.0.cv.notify_all();
        Ok(())
    }

    /// Blocks until the value is at least `value`; returns how long it blocked.
    pub fn wait(&self, value: u64) -> std::time::Duration {
        let start = Instant::now();
        let v = lock(&self.0.value);
        if *v >= value {
            return std::time::Duration::ZERO;
        }
        drop(wait_until(&self.0.cv, v, |v| *v >= value));
        start.elapsed()
    }
}

/// Host memory standing in for device or pinned memory. The lock makes concurrent access
/// memory-safe; *ordering* between writers and readers is the pools' and edges' job, and a
/// missing edge shows up as wrong contents, which is what the tests look for.
#[derive(Debug, Clone)]
pub struct HostMem(Arc<Mutex<Vec<u8>>>);

impl HostMem {
    /// Zeroed memory of `bytes` bytes.
    pub fn zeroed(bytes: usize) -> Self {
        Self(Arc::new(Mutex::new(vec![0; bytes])))
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        lock(&self.0).len()
    }

    /// Whether the buffer has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs `f` on the bytes.
    pub fn read<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(&lock(&self.0))
    }

    /// Runs `f` on the bytes, mutably.
    pub fn write<R>(&self, f: impl FnOnce(&mut [u8]) -> R) -> R {
        f(&mut lock(&self.0))
    }

    fn copy_from(&self, src: &HostMem) {
        if Arc::ptr_eq(&self.0, &src.0) {
            return;
        }
        // Snapshot the source first so that two buffers are never locked at once (no lock
        // order to get wrong between opposite copies).
        let data = src.read(<[u8]>::to_vec);
        self.write(|d| d[..data.len()].copy_from_slice(&data));
    }
}

fn check_copy(op: &'static str, dst: &HostMem, src: &HostMem) -> Result<()> {
    let (needed, len) = (src.len(), dst.len());
    if needed > len {
        return Err(Error::BufferTooSmall { op, needed, len });
    }
    Ok(())
}

impl Backend for HostBackend {
    type Stream = HostStream;
    type Event = HostEvent;
    type Counter = HostCounter;
    type DeviceMem = HostMem;
    type PinnedMem = HostMem;

    fn name(&self) -> &'static str {
        "host"
    }

    fn device_counters(&self) -> bool {
        true
    }

    fn create_stream(&self, name: &'static str) -> Result<HostStream> {
        Ok(HostStream::new(name))
    }

    fn synchronize(&self, stream: &HostStream) -> Result<()> {
        stream.synchronize()
    }

    fn enqueue_host(&self, stream: &HostStream, task: HostTask) -> Result<()> {
        stream.submit(task)
    }

    fn create_event(&self) -> Result<HostEvent> {
        Ok(HostEvent(Arc::new(Flag::default())))
    }

    fn record_event(&self, event: &HostEvent, stream: &HostStream) -> Result<()> {
        let flag = Arc::clone(&event.0);
        // The record number is taken now, at submission, so a wait submitted later refers
        // to this record even if the stream has not reached it yet (CUDA's semantics).
        let mut st = lock(&flag.state);
        st.recorded += 1;
        let n = st.recorded;
        drop(st);
        stream.submit(Box::new(move || {
            let mut st = lock(&flag.state);
            st.completed = st.completed.max(n);
            drop(st);
            flag.cv.notify_all();
            Ok(())
        }))
    }

    fn stream_wait_event(
        &self,
        stream: &HostStream,
        event: &HostEvent,
        meter: &Arc<StallMeter>,
    ) -> Result<()> {
        let target = lock(&event.0.state).recorded;
        if target == 0 {
            meter.count();
            return Ok(());
        }
        let flag = Arc::clone(&event.0);
        let meter = Arc::clone(meter);
        stream.submit(Box::new(move || {
            let start = Instant::now();
            flag.wait_for(target);
            meter.add(start.elapsed());
            Ok(())
        }))
    }

    fn host_wait_event(&self, event: &HostEvent) -> Result<()> {
        let target = lock(&event.0.state).recorded;
        event.0.wait_for(target);
        Ok(())
    }

    fn create_counter(&self, name: &'static str) -> Result<HostCounter> {
        Ok(HostCounter::new(name))
    }

    fn counter_value(&self, counter: &HostCounter) -> u64 {
        counter.value()
    }

    fn publish_host(&self, counter: &HostCounter, value: u64) -> Result<()> {
        counter.publish(value)
    }

    fn publish_on_stream(
        &self,
        counter: &HostCounter,
        value: u64,
        stream: &HostStream,
    ) -> Result<()> {
        let c = counter.clone();
        stream.submit(Box::new(move || c.publish(value)))
    }

    fn stream_wait_counter(
        &self,
        stream: &HostStream,
        counter: &HostCounter,
        value: u64,
        meter: &Arc<StallMeter>,
    ) -> Result<()> {
        let c = counter.clone();
        let meter = Arc::clone(meter);
        stream.submit(Box::new(move || {
            meter.add(c.wait(value));
            Ok(())
        }))
    }

    fn host_wait_counter(&self, counter: &HostCounter, value: u64) -> Result<()> {
        counter.wait(value);
        Ok(())
    }

    fn alloc_device(&self, bytes: usize) -> Result<HostMem> {
        Ok(HostMem::zeroed(bytes))
    }

    fn alloc_pinned(&self, bytes: usize) -> Result<HostMem> {
        Ok(HostMem::zeroed(bytes))
    }

    fn device_len(&self, mem: &HostMem) -> usize {
        mem.len()
    }

    fn pinned_len(&self, mem: &HostMem) -> usize {
        mem.len()
    }

    fn fill_u32(&self, stream: &HostStream, dst: &HostMem, value: u32) -> Result<()> {
        let dst = dst.clone();
        stream.submit(Box::new(move || {
            let word = value.to_ne_bytes();
            dst.write(|d| d.chunks_exact_mut(4).for_each(|w| w.copy_from_slice(&word)));
            Ok(())
        }))
    }

    fn copy_to_pinned(&self, stream: &HostStream, dst: &HostMem, src: &HostMem) -> Result<()> {
        check_copy("copy_to_pinned", dst, src)?;
        let (dst, src) = (dst.clone(), src.clone());
        stream.submit(Box::new(move || {
            dst.copy_from(&src);
            Ok(())
        }))
    }

    fn copy_to_device(&self, stream: &HostStream, dst: &HostMem, src: &HostMem) -> Result<()> {
        check_copy("copy_to_device", dst, src)?;
        let (dst, src) = (dst.clone(), src.clone());
        stream.submit(Box::new(move || {
            dst.copy_from(&src);
            Ok(())
        }))
    }

    fn read_pinned<R>(&self, mem: &HostMem, f: impl FnOnce(&[u8]) -> R) -> R {
        mem.read(f)
    }

    fn write_pinned<R>(&self, mem: &HostMem, f: impl FnOnce(&mut [u8]) -> R) -> R {
        mem.write(f)
    }
}
