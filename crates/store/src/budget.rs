//! `ByteBudget`: a bound on bytes in flight, shared by the threads that issue reads ahead
//! of their use and the threads that consume them.
//!
//! A reader acquires a [`BytePermit`] for a read's bytes before issuing it and drops the permit
//! once the bytes are consumed; while the budget is spent, `acquire` blocks (back-pressure
//! on the issuing thread). A request larger than the whole budget is clamped to it, so it
//! waits for the budget to be empty and then runs alone: no request can wait forever for
//! room that will never exist. [`ByteBudget::close`] wakes every waiter with `None`, so a
//! thread blocked here during teardown never hangs.

use std::fmt;

use crate::sync::{Arc, Condvar, Mutex, lock, wait};

/// A byte budget; clones share it.
#[derive(Clone)]
pub struct ByteBudget {
    inner: Arc<Inner>,
}

struct Inner {
    capacity: u64,
    state: Mutex<State>,
    freed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    used: u64,
    closed: bool,
}

/// Bytes held against a [`ByteBudget`]; dropping it gives them back.
pub struct BytePermit {
    inner: Arc<Inner>,
    bytes: u64,
}

impl ByteBudget {
    /// A budget of `capacity` bytes (at least 1).
    pub fn new(capacity: u64) -> Self {
        Self {
            inner: Arc::new(Inner {
                capacity: capacity.max(1),
                state: Mutex::new(State::default()),
                freed: Condvar::new(),
            }),
        }
    }

    /// The budget's size.
    pub fn capacity(&self) -> u64 {
        self.inner.capacity
    }

    /// Bytes held by live permits.
    pub fn used(&self) -> u64 {
        lock(&self.inner.state).used
    }

    /// Holds `bytes` (clamped to the capacity), blocking until they fit. `None` once the
    /// budget is closed, also for a caller that was waiting.
    pub fn acquire(&self, bytes: u64) -> Option<BytePermit> {
        let bytes = bytes.min(self.inner.capacity);
        let mut st = lock(&self.inner.state);
        loop {
            if st.closed {
                return None;
            }
            // `used <= capacity` always holds and `bytes <= capacity`: no overflow.
            if st.used + bytes <= self.inner.capacity {
                st.used += bytes;
                return Some(BytePermit { inner: Arc::clone(&self.inner), bytes });
            }
            st = wait(&self.inner.freed, st);
        }
    }

    /// Refuses every later `acquire` and wakes the waiting ones. Live permits stay valid
    /// and still give their bytes back when dropped.
    pub fn close(&self) {
        lock(&self.inner.state).closed = true;
        self.inner.freed.notify_all();
    }
}

impl BytePermit {
    /// The bytes this permit holds.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for BytePermit {
    fn drop(&mut self) {
        let mut st = lock(&self.inner.state);
        st.used -= self.bytes;
        drop(st);
        self.inner.freed.notify_all();
    }
}

impl fmt::Debug for ByteBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = lock(&self.inner.state);
        f.debug_struct("ByteBudget")
            .field("capacity", &self.inner.capacity)
            .field("used", &st.used)
            .field("closed", &st.closed)
            .finish()
    }
}

impl fmt::Debug for BytePermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BytePermit").field("bytes", &self.bytes).finish()
    }
}

#[cfg(all(test, not(damacy_loom)))]
mod tests {
    use super::*;

    #[test]
    fn permits_hold_bytes_until_dropped_and_oversized_requests_are_clamped() {
        let b = ByteBudget::new(10);
        let p = b.acquire(4).unwrap();
        let q = b.acquire(6).unwrap();
        assert_eq!((p.bytes(), q.bytes(), b.used()), (4, 6, 10));
        drop(p);
        assert_eq!(b.used(), 6);
        drop(q);
        let big = b.acquire(1 << 40).unwrap();
        assert_eq!((big.bytes(), b.used()), (10, 10), "clamped to the capacity");
    }

    #[test]
    fn a_waiter_proceeds_when_bytes_come_back_and_close_wakes_the_rest() {
        let b = ByteBudget::new(8);
        let held = b.acquire(8).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let b2 = b.clone();
        let waiter = std::thread::spawn(move || {
            let p = b2.acquire(5);
            tx.send(p.as_ref().map(BytePermit::bytes)).unwrap();
            p
        });
        // The waiter cannot have its bytes while `held` lives: nothing arrives before it
        // is dropped (the receive below only returns after the drop made room).
        assert!(rx.try_recv().is_err());
        drop(held);
        assert_eq!(rx.recv().unwrap(), Some(5));
        let p = waiter.join().unwrap();
        assert_eq!(b.used(), 5);

        let b3 = b.clone();
        let blocked = std::thread::spawn(move || b3.acquire(8).is_none());
        b.close();
        assert!(blocked.join().unwrap(), "a closed budget answers None to a waiter");
        assert!(b.acquire(1).is_none());
        drop(p);
        assert_eq!(b.used(), 0, "a permit outliving close still gives its bytes back");
    }
}

#[cfg(all(test, damacy_loom))]
mod loom_models {
    use super::*;

    /// Two issuers and a consumer: the budget is never exceeded, every issuer gets its
    /// permit once bytes come back, and nothing is held at the end.
    #[test]
    fn never_exceeds_capacity_and_every_waiter_is_served() {
        loom::model(|| {
            let b = ByteBudget::new(4);
            let first = b.acquire(3).unwrap();
            let issuers: Vec<_> = (0..2)
                .map(|_| {
                    let b = b.clone();
                    loom::thread::spawn(move || {
                        let p = b.acquire(3).unwrap();
                        assert!(b.used() <= 4);
                        drop(p);
                    })
                })
                .collect();
            drop(first);
            for t in issuers {
                t.join().unwrap();
            }
            assert_eq!(b.used(), 0);
        });
    }

    /// A waiter blocked on a full budget returns `None` when another thread closes it.
    #[test]
    fn close_wakes_a_blocked_waiter() {
        loom::model(|| {
            let b = ByteBudget::new(2);
            let held = b.acquire(2).unwrap();
            let b2 = b.clone();
            let waiter = loom::thread::spawn(move || b2.acquire(2).map(|p| p.bytes()));
            b.close();
            let got = waiter.join().unwrap();
            // Either it got in before the close (impossible: `held` lives) or it was refused.
            assert_eq!(got, None);
            drop(held);
            assert_eq!(b.used(), 0);
        });
    }
}
