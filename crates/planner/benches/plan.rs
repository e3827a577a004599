//! Plans one batch of the `default` scenario (benches/default_batch.rs).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use planner::{OutDtype, PlanLimits};

mod default_batch;
use default_batch::batch;

fn bench(c: &mut Criterion) {
    let (arrays, samples) = batch();
    let limits = PlanLimits::default();
    let plan = planner::plan(&arrays, &samples, &limits, OutDtype::F32).unwrap();
    let s = plan.stats;
    println!(
        "default batch: {} chunks ({} placements), {} reads of {:.1} MiB, {} waves; \
         read amplification {:.3}, decode amplification {:.3}",
        plan.chunks.len(),
        s.placements,
        plan.reads.len(),
        s.bytes_read as f64 / (1 << 20) as f64,
        plan.waves.len(),
        s.read_amplification(),
        s.decode_amplification(),
    );
    // The build host is shared, so wall-clock figures stretch with its load; the thread's
    // on-CPU time (Linux schedstat) is printed beside criterion's figure.
    if let Some(t0) = on_cpu_ns() {
        let n = 300;
        for _ in 0..n {
            black_box(planner::plan(
                black_box(&arrays),
                black_box(&samples),
                &limits,
                OutDtype::F32,
            ))
            .ok();
        }
        if let Some(t1) = on_cpu_ns() {
            println!(
                "on-CPU time: {:.0} µs/batch over {n} batches",
                (t1 - t0) as f64 / n as f64 / 1e3
            );
        }
    }
    c.bench_function("plan_default_batch", |b| {
        b.iter(|| planner::plan(black_box(&arrays), black_box(&samples), &limits, OutDtype::F32))
    });
}

/// Nanoseconds this thread has run on a CPU, where Linux reports it.
fn on_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

criterion_group!(benches, bench);
criterion_main!(benches);
