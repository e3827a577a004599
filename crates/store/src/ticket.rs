//! Completion of a batch of reads: a [`Ticket`] the submitter polls or waits on, and the
//! [`Completer`] a store fills it through. A ticket is done only when every read's bytes
//! are in its buffer and its result is recorded (lesson 6: "done" must mean done).

use std::fmt;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::request::{ReadRequest, ReadResult};
use crate::sync::{self, Arc, Condvar, Mutex};

type Callback = Box<dyn FnOnce(Vec<ReadResult>) + Send>;

struct State {
    remaining: usize,
    results: Vec<Option<ReadResult>>,
    callback: Option<Callback>,
    /// Each read's key, offset and length where the ticket was made from its requests
    /// ([`Ticket::for_reads`]): what an abandoned read's result names.
    reads: Vec<(String, u64, usize)>,
}

struct Shared {
    state: Mutex<State>,
    done: Condvar,
}

/// The pending results of one `submit`, in submission order.
pub struct Ticket {
    shared: Arc<Shared>,
}

/// The store's side of a [`Ticket`]: fills one result per read. Clone it to hand it to
/// several threads. When the last clone is dropped with reads still unfilled, those
/// reads complete with [`Error::Abandoned`]: a store that loses a completer (a panicking
/// I/O thread, a cancelled task) fails its reads instead of leaving the reader waiting.
#[derive(Clone)]
pub struct Completer {
    shared: Arc<Shared>,
    _live: Arc<Live>,
}

/// Held by every clone of a ticket's completer; dropped with the last.
struct Live {
    shared: Arc<Shared>,
}

impl Drop for Live {
    fn drop(&mut self) {
        let mut st = sync::lock(&self.shared.state);
        if st.remaining == 0 {
            return;
        }
        let reads = std::mem::take(&mut st.reads);
        for (i, slot) in st.results.iter_mut().enumerate() {
            if slot.is_none() {
                let (key, offset, len) = reads.get(i).cloned().unwrap_or_default();
                let path = key.clone().into();
                *slot = Some(ReadResult {
                    key,
                    offset,
                    len,
                    buf_offset: 0,
                    buf: Box::new(Vec::<u8>::new()),
                    outcome: Err(Error::Abandoned { path }),
                });
            }
        }
        st.remaining = 0;
        finish(&self.shared, st);
    }
}

/// Hands every result to the ticket's callback, or wakes its waiters, once `remaining`
/// reached zero (the state's lock is released first).
fn finish(shared: &Shared, mut st: sync::MutexGuard<'_, State>) {
    if let Some(cb) = st.callback.take() {
        let results = std::mem::take(&mut st.results).into_iter().flatten().collect();
        // Run the callback outside the lock: it may take other locks.
        drop(st);
        cb(results);
    } else {
        drop(st);
        shared.done.notify_all();
    }
}

impl Ticket {
    /// A ticket for `n` reads and the completer that fills it. A ticket for zero reads is
    /// done at once.
    pub fn new(n: usize) -> (Ticket, Completer) {
        Self::with_reads(n, Vec::new())
    }

    /// A ticket for `reads` (not consumed): like [`Ticket::new`], and a read the store
    /// abandons is reported with its key, offset and length.
    pub fn for_reads(reads: &[ReadRequest]) -> (Ticket, Completer) {
        let meta = reads.iter().map(|r| (r.key.clone(), r.offset, r.len)).collect();
        Self::with_reads(reads.len(), meta)
    }

    fn with_reads(n: usize, reads: Vec<(String, u64, usize)>) -> (Ticket, Completer) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                remaining: n,
                results: (0..n).map(|_| None).collect(),
                callback: None,
                reads,
            }),
            done: Condvar::new(),
        });
        let live = Arc::new(Live { shared: shared.clone() });
        (Ticket { shared: shared.clone() }, Completer { shared, _live: live })
    }

    /// Number of reads in the batch.
    pub fn len(&self) -> usize {
        sync::lock(&self.shared.state).results.len()
    }

    /// True for a ticket of zero reads.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True once every read has finished and written its bytes (never earlier).
    pub fn is_done(&self) -> bool {
        sync::lock(&self.shared.state).remaining == 0
    }

    /// Blocks until every read has finished; the results, in submission order.
    pub fn wait(self) -> Vec<ReadResult> {
        let mut st = sync::lock(&self.shared.state);
        while st.remaining > 0 {
            st = sync::wait(&self.shared.done, st);
        }
        std::mem::take(&mut st.results).into_iter().flatten().collect()
    }

    /// Like [`wait`](Self::wait) for at most `timeout`.
    ///
    /// # Errors
    /// The ticket itself, still pending, when the time runs out.
    pub fn wait_timeout(self, timeout: Duration) -> Result<Vec<ReadResult>, Ticket> {
        let deadline = Instant::now().checked_add(timeout);
        let mut st = sync::lock(&self.shared.state);
        while st.remaining > 0 {
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            if left.is_zero() {
                drop(st);
                return Err(self);
            }
            st = sync::wait_timeout(&self.shared.done, st, left);
        }
        Ok(std::mem::take(&mut st.results).into_iter().flatten().collect())
    }

    /// Calls `f` with the results once every read has finished: at once on this thread if
    /// they already have, otherwise on the thread that finishes the last read (an I/O
    /// thread: keep `f` short and never block it on this store's queue).
    pub fn on_complete(self, f: impl FnOnce(Vec<ReadResult>) + Send + 'static) {
        let mut st = sync::lock(&self.shared.state);
        if st.remaining == 0 {
            let results = std::mem::take(&mut st.results).into_iter().flatten().collect();
            drop(st);
            f(results);
        } else {
            st.callback = Some(Box::new(f));
        }
    }
}

impl Completer {
    /// Records the result of read `index`. Returns `false` (and drops `result`) when the
    /// index is out of range or already filled, which is a bug in the store.
    pub fn complete(&self, index: usize, result: ReadResult) -> bool {
        let mut st = sync::lock(&self.shared.state);
        match st.results.get_mut(index) {
            Some(slot @ None) => *slot = Some(result),
            _ => return false,
        }
        st.remaining -= 1;
        if st.remaining > 0 {
            return true;
        }
        finish(&self.shared, st);
        true
    }
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = sync::lock(&self.shared.state);
        f.debug_struct("Ticket")
            .field("reads", &st.results.len())
            .field("remaining", &st.remaining)
            .finish()
    }
}

impl fmt::Debug for Completer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Completer").finish_non_exhaustive()
    }
}

#[cfg(all(test, not(damacy_loom)))]
mod tests {
    use super::*;
    use crate::request::ReadResult;

    fn result(i: usize) -> ReadResult {
        ReadResult {
            key: format!("k{i}"),
            offset: i as u64,
            len: 1,
            buf_offset: 0,
            buf: Box::new(vec![i as u8]),
            outcome: Ok(1),
        }
    }

    #[test]
    fn done_only_after_every_result_and_in_submission_order() {
        let (t, c) = Ticket::new(3);
        assert!(!t.is_done());
        assert!(c.complete(2, result(2)));
        assert!(c.complete(0, result(0)));
        assert!(!t.is_done());
        assert!(!c.complete(0, result(0)), "double completion is refused");
        assert!(!c.complete(7, result(7)), "out of range is refused");
        let t = t.wait_timeout(Duration::from_millis(1)).unwrap_err();
        assert!(c.complete(1, result(1)));
        assert!(t.is_done());
        let keys: Vec<_> = t.wait().into_iter().map(|r| r.key).collect();
        assert_eq!(keys, ["k0", "k1", "k2"]);
    }

    /// A store that drops every clone of a completer with reads unfilled fails those
    /// reads (`Abandoned`, naming the read's key where the ticket knows it) instead of
    /// leaving the reader waiting for good; the filled ones keep their results, and
    /// dropping one clone while another lives abandons nothing.
    #[test]
    fn reads_the_store_lets_go_of_fail_instead_of_hanging() {
        let reads = vec![ReadRequest::to_vec("a/c/0", 10, 4), ReadRequest::to_vec("a/c/1", 0, 8)];
        let (t, c) = Ticket::for_reads(&reads);
        let other = c.clone();
        assert!(c.complete(0, result(0)));
        drop(c);
        assert!(!t.is_done(), "a clone still holds the ticket");
        // A hang guard, not a synchronization: without the abandonment it never wakes.
        let waiter = std::thread::spawn(move || t.wait_timeout(Duration::from_secs(60)));
        drop(other);
        let got = waiter.join().expect("the waiter").expect("abandoned reads finish the ticket");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].key, "k0");
        assert!(got[0].outcome.is_ok());
        assert_eq!((got[1].key.as_str(), got[1].offset, got[1].len), ("a/c/1", 0, 8));
        match &got[1].outcome {
            Err(Error::Abandoned { path }) => assert_eq!(path, std::path::Path::new("a/c/1")),
            other => panic!("expected Abandoned, got {other:?}"),
        }
        // A callback fires too; a ticket without its requests names no key.
        let (t, c) = Ticket::new(1);
        let (tx, rx) = std::sync::mpsc::channel();
        t.on_complete(move |r| tx.send(r.into_iter().map(|r| r.outcome.is_err())).unwrap());
        drop(c);
        assert_eq!(rx.recv().unwrap().collect::<Vec<_>>(), [true]);
        // A finished ticket is left as it is.
        let (t, c) = Ticket::new(1);
        assert!(c.complete(0, result(0)));
        drop(c);
        assert!(t.wait()[0].outcome.is_ok());
    }

    #[test]
    fn empty_ticket_is_done_and_callbacks_fire_once_complete() {
        let (t, _c) = Ticket::new(0);
        assert!(t.is_done() && t.is_empty());
        let (t, c) = Ticket::new(1);
        let (tx, rx) = std::sync::mpsc::channel();
        t.on_complete(move |r| tx.send(r.len()).unwrap());
        assert!(rx.try_recv().is_err());
        c.complete(0, result(0));
        assert_eq!(rx.recv().unwrap(), 1);
    }

    #[test]
    fn waiter_on_another_thread_wakes_on_completion() {
        let (t, c) = Ticket::new(1);
        let h = std::thread::spawn(move || t.wait().len());
        std::thread::sleep(Duration::from_millis(10));
        c.complete(0, result(0));
        assert_eq!(h.join().unwrap(), 1);
    }
}

#[cfg(all(test, damacy_loom))]
mod loom_models {
    use super::*;

    fn ok(i: usize) -> ReadResult {
        ReadResult {
            key: format!("k{i}"),
            offset: 0,
            len: 1,
            buf_offset: 0,
            buf: Box::new(vec![0u8]),
            outcome: Ok(1),
        }
    }

    /// Two I/O threads hold clones of a ticket's completer; one fills read 0, both let
    /// go without filling read 1. In every interleaving the waiter wakes with read 0's
    /// result and read 1 abandoned (never a hang, never read 0 overwritten).
    #[test]
    fn a_completer_let_go_by_every_thread_fails_the_rest_once() {
        loom::model(|| {
            let reads = vec![ReadRequest::to_vec("a", 0, 1), ReadRequest::to_vec("b", 0, 1)];
            let (t, c) = Ticket::for_reads(&reads);
            let c2 = c.clone();
            let io = loom::thread::spawn(move || {
                assert!(c2.complete(0, ok(0)));
            });
            let other = loom::thread::spawn(move || drop(c));
            let got = t.wait();
            io.join().unwrap();
            other.join().unwrap();
            assert_eq!(got.len(), 2);
            assert!(got[0].outcome.is_ok(), "{:?}", got[0].outcome);
            assert!(matches!(got[1].outcome, Err(Error::Abandoned { .. })));
        });
    }
}
