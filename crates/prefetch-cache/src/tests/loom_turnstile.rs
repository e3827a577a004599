//! Loom models of the turnstile: items finished out of order go through in number order;
//! a stop gives up exactly the items from its number on, with no waiter left asleep.

use crate::sync::{Arc, Mutex, thread};
use crate::turnstile::Turnstile;

/// Three holders, started in reverse order, each waiting for its turn: they go through
/// as 0, 1, 2 under every interleaving.
#[test]
fn loom_turnstile_keeps_number_order() {
    loom::model(|| {
        let t = Arc::new(Turnstile::new());
        let order = Arc::new(Mutex::new(Vec::new()));
        let hs: Vec<_> = [2u64, 1]
            .into_iter()
            .map(|id| {
                let (t, order) = (Arc::clone(&t), Arc::clone(&order));
                thread::spawn(move || {
                    assert!(t.wait(id));
                    order.lock().unwrap().push(id);
                    t.pass(id);
                })
            })
            .collect();
        assert!(t.wait(0));
        order.lock().unwrap().push(0);
        t.pass(0);
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2]);
    });
}

/// Item 0's holder stops the turnstile from 1 on (as a panicking preparer does) while the
/// holders of 1 and 2 wait or arrive: both give up, none sleeps forever, and 0 had its
/// turn.
#[test]
fn loom_turnstile_stop_wakes_every_later_waiter() {
    loom::model(|| {
        let t = Arc::new(Turnstile::new());
        let hs: Vec<_> = [1u64, 2]
            .into_iter()
            .map(|id| {
                let t = Arc::clone(&t);
                thread::spawn(move || t.wait(id))
            })
            .collect();
        assert!(t.wait(0));
        t.stop(1);
        t.pass(0);
        for h in hs {
            assert!(!h.join().unwrap(), "a stopped item never gets a turn");
        }
    });
}

/// Teardown: `close` wakes a waiter whose turn has not come.
#[test]
fn loom_turnstile_close_wakes_a_waiter() {
    loom::model(|| {
        let t = Arc::new(Turnstile::new());
        let t2 = Arc::clone(&t);
        let h = thread::spawn(move || t2.wait(1));
        t.close();
        assert!(!h.join().unwrap());
    });
}
