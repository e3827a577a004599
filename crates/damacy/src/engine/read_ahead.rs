//! Reads submitted ahead of the decode workers, for stores whose every request waits
//! (object stores: [`store::Store::wants_read_ahead`]).
//!
//! Both engines queue one decode job per read op. For local files the job reads its op
//! synchronously on the worker. For an object store that would bound requests in flight
//! by the number of decode threads, and each one costs a round trip: so the thread that
//! queues the jobs first [`issue`](ReadAhead::issue)s the op through the store's
//! `submit` (which runs requests concurrently, bounded by the store's own limit) and the
//! job only waits for its bytes ([`read_op`]).
//!
//! Memory: bytes of reads issued and not yet taken by a worker are bounded by a
//! [`ByteBudget`] (`object_store.read_ahead_bytes`); issuing blocks while it is spent.
//! That cannot deadlock: an op holds budget only once issued, its job is queued right
//! after (before the next op is issued), and a worker gives the budget back when it takes
//! the bytes. [`ReadAhead::close`] (engine shutdown) wakes an issuer blocked on the
//! budget; its op is then read on the worker as for a local file.

use std::sync::Arc;

use planner::BatchPlan;
use store::{ByteBudget, BytePermit, ReadRequest, Store, Ticket};

/// The read-ahead of one engine.
#[derive(Debug)]
pub(crate) struct ReadAhead {
    store: Arc<dyn Store>,
    budget: ByteBudget,
}

/// One op's read in flight (or done), holding its share of the budget.
#[derive(Debug)]
pub(crate) struct Ahead {
    ticket: Ticket,
    _permit: BytePermit,
}

impl ReadAhead {
    pub(crate) fn new(store: Arc<dyn Store>, budget_bytes: u64) -> Self {
        Self { store, budget: ByteBudget::new(budget_bytes) }
    }

    /// Submits read op `r` of `plan` when its store wants reads ahead, blocking while the
    /// budget is spent. `None` when the op is read on the worker instead: a local file, a
    /// plan that does not name the op (the job reports that), an empty op, or a closed
    /// read-ahead. A store that refuses the submit also yields `None`: the worker's own
    /// read then meets (and reports) the same failure.
    pub(crate) fn issue(&self, plan: &BatchPlan, r: usize) -> Option<Ahead> {
        let op = plan.reads.get(r)?;
        let file = plan.files.get(op.file)?;
        let len = usize::try_from(op.len).ok().filter(|&n| n > 0)?;
        if !self.store.wants_read_ahead(&file.key) {
            return None;
        }
        let permit = self.budget.acquire(op.len)?;
        let ticket =
            self.store.submit(vec![ReadRequest::to_vec(&*file.key, op.offset, len)]).ok()?;
        Some(Ahead { ticket, _permit: permit })
    }

    /// Whether read op `r` of `plan` is for a store that wants reads ahead (what
    /// [`ReadAhead::issue`] submits).
    pub(crate) fn wants(&self, plan: &BatchPlan, r: usize) -> bool {
        let file = plan.reads.get(r).and_then(|op| plan.files.get(op.file));
        file.is_some_and(|f| self.store.wants_read_ahead(&f.key))
    }

    /// Wakes an issuer blocked on the budget; later ops are read on the workers.
    pub(crate) fn close(&self) {
        self.budget.close();
    }
}

/// Puts read op bytes (`len` bytes of `key` at `offset`) into `buf`, exactly `len` long:
/// from the op's read-ahead when it has one, else read now on the calling worker.
///
/// # Errors
/// The store's error for the read, [`store::Error::ShortRead`] when the object ends early.
pub(crate) fn read_op(
    ahead: Option<Ahead>,
    store: &dyn Store,
    key: &str,
    offset: u64,
    len: usize,
    buf: &mut Vec<u8>,
) -> Result<(), store::Error> {
    let Some(ahead) = ahead else {
        buf.resize(len, 0);
        return store.read_exact(key, offset, &mut buf[..len]);
    };
    let Some(result) = ahead.ticket.wait().into_iter().next() else {
        // `issue` submits exactly one request, so its ticket holds one result; a ticket
        // whose store went away completes its reads with `ShutDown` errors.
        return Err(store::Error::ShutDown { path: key.into() });
    };
    result.exact(key)?;
    match store::downcast_buf::<Vec<u8>>(result.buf) {
        // The request's own `Vec` (what `issue` submits): take it rather than copy.
        Ok(bytes) => *buf = *bytes,
        Err(mut other) => {
            buf.clear();
            buf.extend_from_slice(other.as_mut_slice());
        }
    }
    buf.truncate(len);
    Ok(())
}
