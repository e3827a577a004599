//! Edge-table checks and scheduler behavior on the host backend.

use std::time::Duration;

use crate::HostBackend;
use crate::edge::{EdgeDecl, EdgeKind, Endpoint, TeardownFinding};
use crate::error::Error;
use crate::scheduler::{Scheduler, SchedulerConfig, pipeline_depth};
use crate::sync::{Arc, Mutex, lock};

fn sched() -> Scheduler<HostBackend> {
    let cfg = SchedulerConfig { streams: vec!["p", "c"], movers: 1, orderable_on_device: true };
    Scheduler::new(Arc::new(HostBackend::new()), &cfg).expect("scheduler")
}

fn decl(name: &'static str, kind: EdgeKind) -> EdgeDecl {
    EdgeDecl {
        name,
        producer: Endpoint::Stream("p"),
        consumer: Endpoint::Stream("c"),
        guards: "test bytes",
        kind,
        per_slot: true,
    }
}

#[test]
fn wait_before_record_is_reported() {
    let s = sched();
    let e = s.edges().declare(decl("e", EdgeKind::Event)).expect("declare");
    let c = s.stream("c").expect("c");
    assert_eq!(s.edges().wait(&e, 1, c), Err(Error::WaitBeforeRecord { edge: "e", slot: 1 }));
    s.edges().record(&e, 0, s.stream("p").expect("p")).expect("record slot 0");
    // Recording slot 0 does not make slot 1 waitable.
    assert_eq!(s.edges().wait(&e, 1, c), Err(Error::WaitBeforeRecord { edge: "e", slot: 1 }));
    s.edges().wait(&e, 0, c).expect("wait slot 0");
    let report = s.shutdown(&[]);
    assert!(report.findings.is_empty(), "{:?}", report.findings);
}

#[test]
fn dead_edge_is_reported_at_teardown() {
    let s = sched();
    let e = s.edges().declare(decl("dead", EdgeKind::Event)).expect("declare");
    let live = s.edges().declare(decl("live", EdgeKind::Event)).expect("declare");
    let (p, c) = (s.stream("p").expect("p"), s.stream("c").expect("c"));
    s.edges().record(&e, 1, p).expect("record");
    s.edges().record(&live, 0, p).expect("record");
    s.edges().wait(&live, 0, c).expect("wait");
    let report = s.shutdown(&[]);
    assert_eq!(report.findings, vec![TeardownFinding::DeadEdge { edge: "dead", slot: 1 }]);
    assert_eq!(report.first_error, None);
}

#[test]
fn counter_waited_but_never_published_is_reported() {
    let s = sched();
    let mut d = decl("ctr", EdgeKind::GenCounter);
    d.per_slot = false;
    let e = s.edges().declare(d).expect("declare");
    let (p, c) = (s.stream("p").expect("p"), s.stream("c").expect("c"));
    s.edges().publish(&e, 0, 1, p).expect("publish");
    s.edges().wait_value(&e, 0, 1, c).expect("wait");
    s.edges().wait_value(&e, 0, 3, c).expect("wait ahead of the publish");
    // Teardown would wait forever on stream "c", so look at the findings while 3 is still
    // unpublished, then publish it so the stream drains.
    let findings = s.edges().teardown_findings();
    assert_eq!(
        findings,
        vec![TeardownFinding::NeverPublished { edge: "ctr", slot: 0, wanted: 3, published: 1 }]
    );
    s.edges().publish(&e, 0, 3, p).expect("publish 3");
    let report = s.shutdown(&[]);
    assert!(report.findings.is_empty(), "{:?}", report.findings);
}

#[test]
fn endpoints_and_kinds_are_checked_against_the_declaration() {
    let s = sched();
    let e = s.edges().declare(decl("ev", EdgeKind::Event)).expect("declare");
    let (p, c) = (s.stream("p").expect("p"), s.stream("c").expect("c"));
    assert_eq!(
        s.edges().record(&e, 0, c),
        Err(Error::WrongEndpoint {
            edge: "ev",
            role: "producer",
            declared: "stream \"p\"".into(),
            actual: "stream \"c\"".into()
        })
    );
    s.edges().record(&e, 0, p).expect("record");
    assert!(matches!(s.edges().wait(&e, 0, p), Err(Error::WrongEndpoint { role: "consumer", .. })));
    assert_eq!(
        s.edges().publish(&e, 0, 1, p),
        Err(Error::WrongEdgeKind { edge: "ev", kind: EdgeKind::Event, op: "publish on a stream" })
    );
    assert_eq!(
        s.edges().record(&e, 2, p),
        Err(Error::SlotOutOfRange { what: "edge", name: "ev", slot: 2, slots: 2 })
    );
    assert_eq!(
        s.edges().declare(decl("ev", EdgeKind::GenCounter)).map(|_| ()),
        Err(Error::DuplicateName { name: "ev" })
    );
    s.edges().wait(&e, 0, c).expect("wait");
    assert!(s.shutdown(&[]).findings.is_empty());
}

#[test]
fn host_waits_are_counted_and_timed() {
    let s = sched();
    let d = EdgeDecl {
        name: "rule",
        producer: Endpoint::Host("io"),
        consumer: Endpoint::Host("sched"),
        guards: "staging bytes",
        kind: EdgeKind::HostRule,
        per_slot: false,
    };
    let e = s.edges().declare(d).expect("declare");
    let (t, e2) = (Arc::clone(s.edges()), Arc::clone(&e));
    let h = crate::sync::thread::spawn(move || {
        crate::sync::sleep(Duration::from_millis(30));
        t.publish_host(&e2, 0, 1, "io")
    });
    s.edges().host_wait_value(&e, 0, 1, "sched").expect("wait");
    h.join().expect("join").expect("publish");
    let st = s.edges().stats();
    assert_eq!(st.len(), 1);
    assert_eq!((st[0].signals, st[0].waits), (1, 1));
    assert!(st[0].stall >= Duration::from_millis(10), "{:?}", st[0].stall);
}

#[test]
fn scheduler_streams_depth_and_names() {
    assert_eq!(pipeline_depth(true, true), 2);
    assert_eq!(pipeline_depth(true, false), 1);
    assert_eq!(pipeline_depth(false, true), 1);
    let s = sched();
    assert_eq!(s.depth(), 2);
    assert_eq!(s.edges().slots(), 2);
    assert_eq!(s.stream("nope").map(|_| ()), Err(Error::UnknownStream { name: "nope" }));
    let cfg = SchedulerConfig { streams: vec!["x", "x"], movers: 1, orderable_on_device: true };
    assert_eq!(
        Scheduler::new(Arc::new(HostBackend::new()), &cfg).map(|_| ()),
        Err(Error::DuplicateName { name: "x" })
    );
    let cfg = SchedulerConfig { streams: vec!["x"], movers: 1, orderable_on_device: false };
    let one = Scheduler::new(Arc::new(HostBackend::new()), &cfg).expect("depth 1");
    assert_eq!(one.depth(), 1);
    let r = one.run_stage("stage", 0, || Ok(5)).expect("stage");
    assert_eq!(r, 5);
    let st = one.stage_stats();
    assert_eq!((st[0].name, st[0].runs), ("stage", 1));
}

#[test]
fn move_jobs_run_oldest_first_and_are_joined_before_refill() {
    let s = sched();
    let log = Arc::new(Mutex::new(Vec::new()));
    for i in 0..20usize {
        let slot = i % 2;
        let l = Arc::clone(&log);
        // Submitting for a slot joins that slot's previous job: a job never overlaps its
        // predecessor on the same slot, so per-slot entries alternate start/end.
        s.submit_move(slot, move || {
            lock(&l).push((slot, i, "start"));
            crate::sync::sleep(Duration::from_micros(300));
            lock(&l).push((slot, i, "end"));
            Ok(())
        })
        .expect("submit");
    }
    s.join_move(0).expect("join 0");
    s.join_move(1).expect("join 1");
    let log = lock(&log).clone();
    // One mover thread: jobs run strictly in submission order.
    let order: Vec<usize> = log.iter().filter(|e| e.2 == "start").map(|e| e.1).collect();
    assert_eq!(order, (0..20).collect::<Vec<_>>());
    let report = s.shutdown(&[]);
    assert_eq!(report.first_error, None);
}

#[test]
fn a_failed_move_job_surfaces_before_the_slot_is_refilled() {
    let s = sched();
    s.submit_move(1, || Err(Error::ShutDown)).expect("submit");
    assert_eq!(s.submit_move(1, || Ok(())), Err(Error::ShutDown));
    s.submit_move(1, || panic!("move job panics on purpose")).expect("slot usable again");
    assert_eq!(s.join_move(1), Err(Error::MoveJobPanicked { slot: 1 }));
    assert_eq!(
        s.submit_move(5, || Ok(())),
        Err(Error::SlotOutOfRange { what: "edge", name: "move queue", slot: 5, slots: 2 })
    );
}
