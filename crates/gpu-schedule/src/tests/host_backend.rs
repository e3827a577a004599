//! Host backend: stream order, cross-stream event waits, counters, error surfacing.

use std::time::Duration;

use crate::HostBackend;
use crate::backend::{Backend, StallMeter};
use crate::error::Error;
use crate::sync::{Arc, AtomicU64, Mutex, Ordering, lock};

#[test]
fn stream_runs_tasks_in_submission_order() {
    let b = HostBackend::new();
    let s = b.create_stream("s").expect("stream");
    let seen = Arc::new(Mutex::new(Vec::new()));
    for i in 0..500u32 {
        let seen = Arc::clone(&seen);
        b.enqueue_host(
            &s,
            Box::new(move || {
                if i % 97 == 0 {
                    crate::sync::sleep(Duration::from_millis(2));
                }
                lock(&seen).push(i);
                Ok(())
            }),
        )
        .expect("enqueue");
    }
    b.synchronize(&s).expect("sync");
    assert_eq!(*lock(&seen), (0..500).collect::<Vec<_>>());
}

#[test]
fn event_wait_orders_work_across_streams() {
    let b = HostBackend::new();
    let (a, c) = (b.create_stream("a").expect("a"), b.create_stream("c").expect("c"));
    let value = Arc::new(AtomicU64::new(0));
    let observed = Arc::new(AtomicU64::new(u64::MAX));
    let ev = b.create_event().expect("event");
    let v = Arc::clone(&value);
    b.enqueue_host(
        &a,
        Box::new(move || {
            crate::sync::sleep(Duration::from_millis(40));
            v.store(7, Ordering::SeqCst);
            Ok(())
        }),
    )
    .expect("enqueue");
    b.record_event(&ev, &a).expect("record");
    let meter = Arc::new(StallMeter::default());
    b.stream_wait_event(&c, &ev, &meter).expect("wait");
    let (v, o) = (Arc::clone(&value), Arc::clone(&observed));
    b.enqueue_host(
        &c,
        Box::new(move || {
            o.store(v.load(Ordering::SeqCst), Ordering::SeqCst);
            Ok(())
        }),
    )
    .expect("enqueue");
    b.synchronize(&c).expect("sync");
    assert_eq!(observed.load(Ordering::SeqCst), 7);
    assert_eq!(meter.waits(), 1);
    assert!(meter.stall() > Duration::ZERO);
    b.host_wait_event(&ev).expect("host wait");
}

#[test]
fn counters_publish_wait_and_refuse_to_go_back() {
    let b = HostBackend::new();
    let s = b.create_stream("s").expect("stream");
    let c = b.create_counter("ctr").expect("counter");
    let flag = Arc::new(AtomicU64::new(0));
    let observed = Arc::new(AtomicU64::new(0));
    let meter = Arc::new(StallMeter::default());
    b.stream_wait_counter(&s, &c, 2, &meter).expect("wait");
    let (f, o) = (Arc::clone(&flag), Arc::clone(&observed));
    b.enqueue_host(
        &s,
        Box::new(move || {
            o.store(f.load(Ordering::SeqCst), Ordering::SeqCst);
            Ok(())
        }),
    )
    .expect("enqueue");
    b.publish_host(&c, 1).expect("publish 1");
    crate::sync::sleep(Duration::from_millis(20));
    // Value 1 does not satisfy a wait for 2: the stream is still blocked.
    assert_eq!(observed.load(Ordering::SeqCst), 0);
    flag.store(5, Ordering::SeqCst);
    b.publish_host(&c, 2).expect("publish 2");
    b.synchronize(&s).expect("sync");
    assert_eq!(observed.load(Ordering::SeqCst), 5);
    assert_eq!(b.counter_value(&c), 2);
    assert_eq!(
        b.publish_host(&c, 1),
        Err(Error::CounterBackwards { counter: "ctr", current: 2, published: 1 })
    );
    b.publish_on_stream(&c, 9, &s).expect("publish on stream");
    b.host_wait_counter(&c, 9).expect("host wait");
    assert_eq!(b.counter_value(&c), 9);
    // A backwards publish on a stream surfaces from synchronize, and the value holds.
    b.publish_on_stream(&c, 3, &s).expect("enqueue");
    assert_eq!(
        b.synchronize(&s),
        Err(Error::CounterBackwards { counter: "ctr", current: 9, published: 3 })
    );
    assert_eq!(b.counter_value(&c), 9);
    b.synchronize(&s).expect("the error is reported once");
}

#[test]
fn task_errors_and_panics_surface_at_synchronize() {
    let b = HostBackend::new();
    let s = b.create_stream("s").expect("stream");
    b.enqueue_host(&s, Box::new(|| Err(Error::ShutDown))).expect("enqueue");
    assert_eq!(b.synchronize(&s), Err(Error::ShutDown));
    b.enqueue_host(&s, Box::new(|| panic!("task panics on purpose"))).expect("enqueue");
    assert_eq!(b.synchronize(&s), Err(Error::StreamTaskPanicked { stream: "s" }));
    // The stream still runs work after a panic.
    let ran = Arc::new(AtomicU64::new(0));
    let r = Arc::clone(&ran);
    b.enqueue_host(
        &s,
        Box::new(move || {
            r.store(1, Ordering::SeqCst);
            Ok(())
        }),
    )
    .expect("enqueue");
    b.synchronize(&s).expect("sync");
    assert_eq!(ran.load(Ordering::SeqCst), 1);
}

#[test]
fn memory_ops_fill_and_copy_in_stream_order() {
    let b = HostBackend::new();
    let s = b.create_stream("s").expect("stream");
    let d = b.alloc_device(16).expect("device");
    let p = b.alloc_pinned(16).expect("pinned");
    b.fill_u32(&s, &d, 0xA1B2_C3D4).expect("fill");
    b.copy_to_pinned(&s, &p, &d).expect("copy");
    b.synchronize(&s).expect("sync");
    let words: Vec<u32> = b.read_pinned(&p, |x| {
        x.chunks_exact(4).map(|w| u32::from_ne_bytes([w[0], w[1], w[2], w[3]])).collect()
    });
    assert_eq!(words, vec![0xA1B2_C3D4; 4]);
    let small = b.alloc_pinned(8).expect("small");
    assert_eq!(
        b.copy_to_pinned(&s, &small, &d),
        Err(Error::BufferTooSmall { op: "copy_to_pinned", needed: 16, len: 8 })
    );
    b.write_pinned(&p, |x| x.fill(1));
    b.copy_to_device(&s, &d, &p).expect("h2d");
    b.synchronize(&s).expect("sync");
    assert_eq!(d.read(<[u8]>::to_vec), vec![1; 16]);
}
