//! The crate's error type: one enum, structured variants naming the edge, pool, slot or call.

use crate::edge::decl::EdgeKind;

/// Everything that can go wrong in `gpu-schedule`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The CUDA driver library could not be loaded (no driver installed, or not on the
    /// library path). The host backend works without it.
    #[error(
        "the CUDA driver library (libcuda.so) was not found; install the NVIDIA driver or choose the host backend"
    )]
    CudaLibraryMissing,
    /// A CUDA driver call failed.
    #[error("CUDA call {call} failed: {code}")]
    CudaDriver {
        /// The driver entry point.
        call: &'static str,
        /// The driver's error code, as its name.
        code: String,
    },
    /// A CUDA call panicked inside the binding (typically a symbol missing from an old driver).
    #[error("CUDA call {call} panicked inside the driver binding (is the driver too old?)")]
    CudaPanicked {
        /// The call that panicked.
        call: &'static str,
    },
    /// Work was submitted to a stream whose worker has stopped.
    #[error("stream {stream:?} is shut down")]
    StreamClosed {
        /// The stream's name.
        stream: &'static str,
    },
    /// A closure submitted to a stream panicked; the stream keeps running.
    #[error("a task on stream {stream:?} panicked")]
    StreamTaskPanicked {
        /// The stream's name.
        stream: &'static str,
    },
    /// Two streams (or two edges) were given the same name.
    #[error("the name {name:?} is declared twice")]
    DuplicateName {
        /// The repeated name.
        name: &'static str,
    },
    /// A stream name that the scheduler did not create.
    #[error("no stream named {name:?}")]
    UnknownStream {
        /// The missing name.
        name: &'static str,
    },
    /// A counter was asked to move backwards.
    #[error("counter {counter:?} is at {current} and cannot go back to {published}")]
    CounterBackwards {
        /// The counter (edge name) concerned.
        counter: &'static str,
        /// Its value before the publish.
        current: u64,
        /// The smaller value that was published.
        published: u64,
    },
    /// An edge was recorded, published or waited on by an endpoint other than the declared one.
    #[error("edge {edge:?}: {role} is declared as {declared} but {actual} used it")]
    WrongEndpoint {
        /// The edge.
        edge: &'static str,
        /// `"producer"` or `"consumer"`.
        role: &'static str,
        /// The declared endpoint.
        declared: String,
        /// The endpoint that made the call.
        actual: String,
    },
    /// A wait on an event edge that was never recorded for this slot: on a device this wait
    /// would silently be a no-op, which is the race the edge table exists to prevent.
    #[error("edge {edge:?} slot {slot}: waited on before anything recorded it")]
    WaitBeforeRecord {
        /// The edge.
        edge: &'static str,
        /// The slot.
        slot: usize,
    },
    /// An operation that does not apply to the edge's kind.
    #[error("edge {edge:?} is a {kind:?} edge; {op} does not apply")]
    WrongEdgeKind {
        /// The edge.
        edge: &'static str,
        /// Its declared kind.
        kind: EdgeKind,
        /// The operation attempted.
        op: &'static str,
    },
    /// A slot index outside a pool or per-slot edge.
    #[error("{what} {name:?}: slot {slot} is out of range (it has {slots} slots)")]
    SlotOutOfRange {
        /// `"pool"` or `"edge"`.
        what: &'static str,
        /// The pool or edge.
        name: &'static str,
        /// The requested slot.
        slot: usize,
        /// How many slots it has.
        slots: usize,
    },
    /// A pool with no slots, or a per-slot table with zero slots.
    #[error("{name:?} needs at least one slot")]
    NoSlots {
        /// The pool or table.
        name: &'static str,
    },
    /// In event mode a slot's next generation cannot be acquired before the previous one's
    /// release was submitted (an event wait cannot refer to a future record).
    #[error(
        "pool {pool:?} slot {slot}: generation {generation} acquired before generation {} was released; event-ordered pools need depth 1 or a release first",
        generation.saturating_sub(1)
    )]
    AcquireBeforeRelease {
        /// The pool.
        pool: &'static str,
        /// The slot.
        slot: usize,
        /// The generation being acquired.
        generation: u64,
    },
    /// Releases of one slot must come in generation order, or the counter would go backwards.
    #[error(
        "pool {pool:?} slot {slot}: released generation {generation} but generation {expected} is next"
    )]
    ReleaseOutOfOrder {
        /// The pool.
        pool: &'static str,
        /// The slot.
        slot: usize,
        /// The generation released.
        generation: u64,
        /// The generation that must be released next.
        expected: u64,
    },
    /// A lease handed to a pool it does not come from.
    #[error("a lease of pool {lease_pool:?} was handed to pool {pool:?}")]
    ForeignLease {
        /// The pool the call went to.
        pool: &'static str,
        /// The pool the lease came from.
        lease_pool: &'static str,
    },
    /// A copy or fill whose lengths do not fit its buffers.
    #[error("{op}: {needed} bytes do not fit a buffer of {len} bytes")]
    BufferTooSmall {
        /// The operation.
        op: &'static str,
        /// Bytes the operation needs.
        needed: usize,
        /// Bytes the buffer holds.
        len: usize,
    },
    /// A data-movement job panicked.
    #[error("the move job of slot {slot} panicked")]
    MoveJobPanicked {
        /// The slot whose job panicked.
        slot: usize,
    },
    /// Work submitted after the scheduler began shutting down.
    #[error("the scheduler is shut down")]
    ShutDown,
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
