//! [`Turnstile`]: work numbered in push order, finished out of order by several threads,
//! handed on in push order. The pipeline's batch preparers use it: each prepares a whole
//! batch beside the others, then waits for its batch's turn to dispatch it.

use crate::sync::{Condvar, Mutex, lock};

/// Lets numbered items through one at a time, in number order from 0: the holder of item
/// `id` waits until every item before it went through (or was given up), goes, then lets
/// the next one go.
#[derive(Debug)]
pub struct Turnstile {
    state: Mutex<TurnState>,
    turn: Condvar,
}

#[derive(Debug, Default)]
struct TurnState {
    /// The item whose turn it is.
    next: u64,
    /// Items from this number on never get a turn.
    end: Option<u64>,
    /// Closed: no item gets a turn any more.
    closed: bool,
}

impl Turnstile {
    /// A turnstile whose first turn is item 0's.
    pub fn new() -> Self {
        Self { state: Mutex::new(TurnState::default()), turn: Condvar::new() }
    }

    /// Blocks until it is `id`'s turn: `true` then, and the caller must [`pass`] once
    /// done; `false` when its turn will never come ([`stop`]ped before it, or
    /// [`close`]d).
    ///
    /// [`pass`]: Self::pass
    /// [`stop`]: Self::stop
    /// [`close`]: Self::close
    pub fn wait(&self, id: u64) -> bool {
        let mut st = lock(&self.state);
        loop {
            if st.closed || st.end.is_some_and(|end| id >= end) {
                return false;
            }
            if st.next == id {
                return true;
            }
            st = self.turn.wait(st).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Ends `id`'s turn (which [`wait`](Self::wait) gave): the next item goes.
    pub fn pass(&self, id: u64) {
        let mut st = lock(&self.state);
        if st.next == id {
            st.next = id + 1;
        }
        self.turn.notify_all();
    }

    /// Gives up every item from `from` on: their [`wait`](Self::wait)s return `false`.
    /// Items before `from` still get their turns. The earliest `from` given wins.
    pub fn stop(&self, from: u64) {
        let mut st = lock(&self.state);
        st.end = Some(st.end.map_or(from, |end| end.min(from)));
        self.turn.notify_all();
    }

    /// Gives up every item whose turn has not come yet (teardown): every waiter wakes with `false`.
    pub fn close(&self) {
        lock(&self.state).closed = true;
        self.turn.notify_all();
    }

    /// Whether items were given up ([`stop`](Self::stop) or [`close`](Self::close)).
    pub fn stopped(&self) -> bool {
        let st = lock(&self.state);
        st.closed || st.end.is_some()
    }
}

#[cfg(all(test, not(damacy_loom)))]
mod unit {
    use super::Turnstile;

    #[test]
    fn items_go_in_number_order_and_stop_gives_up_the_rest() {
        let t = Turnstile::new();
        assert!(t.wait(0));
        t.pass(0);
        assert!(t.wait(1));
        t.stop(3);
        assert!(t.stopped());
        t.pass(1);
        assert!(t.wait(2), "before the stop: still goes");
        t.pass(2);
        assert!(!t.wait(3), "from the stop on: never");
        assert!(!t.wait(7));
        t.stop(5);
        assert!(!t.wait(3), "the earliest stop wins");
        t.close();
        assert!(!t.wait(2));
    }

    #[test]
    fn a_later_item_waits_for_the_earlier_one() {
        let t = std::sync::Arc::new(Turnstile::new());
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let hs: Vec<_> = (0..8u64)
            .rev()
            .map(|id| {
                let (t, order) = (t.clone(), order.clone());
                std::thread::spawn(move || {
                    assert!(t.wait(id));
                    order.lock().unwrap().push(id);
                    t.pass(id);
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..8).collect::<Vec<_>>());
    }
}

impl Default for Turnstile {
    fn default() -> Self {
        Self::new()
    }
}
