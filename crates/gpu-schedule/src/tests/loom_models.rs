//! Loom models: a pool's acquire/release across two generations with a concurrent
//! consumer, and counter publish/wait monotonicity.

use crate::HostBackend;
use crate::backend::host::HostCounter;
use crate::edge::{EdgeTable, Endpoint};
use crate::error::Error;
use crate::pool::{Lease, Pool, PoolSpec};
use crate::sync::{Arc, AtomicU64, Ordering, Queue, thread};

#[test]
fn loom_pool_two_generations_with_concurrent_consumer() {
    loom::model(|| {
        let table = Arc::new(EdgeTable::new(Arc::new(HostBackend::new()), 1).expect("table"));
        let spec = PoolSpec {
            name: "staging",
            acquirer: Endpoint::Host("producer"),
            releaser: Endpoint::Host("consumer"),
        };
        // The buffer is a relaxed atomic: only the pool's release→acquire edge orders the
        // producer's next write after the consumer's read, which is what loom checks.
        let pool = Pool::new(&table, spec, vec![AtomicU64::new(0)]).expect("pool");
        let handoff = Arc::new(Queue::<Lease<HostBackend, AtomicU64>>::new());
        let (p2, h2) = (pool.clone(), Arc::clone(&handoff));
        let consumer = thread::spawn(move || {
            for g in 0..2u64 {
                let lease = h2.pop().expect("a lease per generation");
                assert_eq!(lease.generation(), g);
                assert_eq!(lease.buffer().load(Ordering::Relaxed), g + 1, "read a reused buffer");
                p2.release_host(lease, "consumer").expect("release");
            }
        });
        for g in 0..2u64 {
            let lease = pool.acquire_blocking(0, "producer").expect("acquire");
            assert_eq!(lease.generation(), g);
            lease.buffer().store(g + 1, Ordering::Relaxed);
            handoff.push(lease).expect("queue open");
        }
        consumer.join().expect("consumer");
        assert_eq!(pool.released(0), Ok(2));
    });
}

#[test]
fn loom_counter_publish_wait_monotonic() {
    loom::model(|| {
        let c = HostCounter::new("gen");
        let (c1, c2, c3) = (c.clone(), c.clone(), c.clone());
        let late = thread::spawn(move || c1.publish(1));
        let early = thread::spawn(move || c2.publish(2));
        let waiter = thread::spawn(move || {
            c3.wait(1);
            let first = c3.value();
            let second = c3.value();
            (first, second)
        });
        let r1 = late.join().expect("late");
        let r2 = early.join().expect("early");
        let (first, second) = waiter.join().expect("waiter");
        assert_eq!(r2, Ok(()));
        // Publishing 1 after 2 is refused and leaves the counter at 2.
        assert!(
            r1 == Ok(())
                || r1 == Err(Error::CounterBackwards { counter: "gen", current: 2, published: 1 })
        );
        assert!(first >= 1 && second >= first, "counter went backwards: {first} then {second}");
        assert_eq!(c.value(), 2);
    });
}
