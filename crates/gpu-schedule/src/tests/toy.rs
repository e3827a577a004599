//! The toy two-stage pipeline: a producer stream fills slot buffers with a
//! generation-dependent pattern, a consumer stream copies them out, a delivery job checks.
//! Generic over the backend so that the same code runs on the host and on the GPU.

use std::time::Duration;

use crate::backend::Backend;
use crate::edge::{EdgeDecl, EdgeKind, Endpoint};
use crate::error::Result;
use crate::pool::{Pool, PoolSpec};
use crate::scheduler::{Scheduler, SchedulerConfig, TeardownReport};
use crate::sync::{Arc, Mutex, lock};

pub(crate) struct ToyOptions {
    pub iterations: usize,
    pub words: usize,
    pub max_delay_us: u64,
    pub seed: u64,
    /// The mutation: the device pool's acquire does not wait.
    pub skip_acquire_wait: bool,
    /// Holds the consumer's first copy until the producer has filled iteration `depth`,
    /// which guarantees the reuse race shows when the acquire wait is skipped (and would
    /// deadlock with it, so only the mutation test sets it).
    pub gate_first_copy: bool,
}

#[derive(Debug)]
pub(crate) struct ToyOutcome {
    pub checked: usize,
    pub mismatches: Vec<(usize, u32, u32)>,
    pub report: TeardownReport,
    pub depth: usize,
}

pub(crate) const POISON: u32 = 0xDEAD_BEEF;

pub(crate) fn pattern(iteration: usize) -> u32 {
    // Distinct per iteration, never zero and never the poison value for any test size.
    (iteration as u32).wrapping_add(1).wrapping_mul(0x9E37_79B9) ^ 0x0101_0101
}

fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn delay<B: Backend>(backend: &B, stream: &B::Stream, rng: &mut u64, max_us: u64) -> Result<()> {
    if max_us == 0 {
        return Ok(());
    }
    let us = next(rng) % (max_us + 1);
    backend.enqueue_host(
        stream,
        Box::new(move || {
            crate::sync::sleep(Duration::from_micros(us));
            Ok(())
        }),
    )
}

pub(crate) fn run_toy<B: Backend>(backend: Arc<B>, opts: &ToyOptions) -> Result<ToyOutcome> {
    let config = SchedulerConfig {
        streams: vec!["produce", "consume"],
        movers: 2,
        orderable_on_device: true,
    };
    let sched = Scheduler::new(Arc::clone(&backend), &config)?;
    let depth = sched.depth();
    let bytes = opts.words * 4;
    let produce = sched.stream("produce")?;
    let consume = sched.stream("consume")?;
    let edges = Arc::clone(sched.edges());

    let dev_bufs = (0..depth).map(|_| backend.alloc_device(bytes)).collect::<Result<Vec<_>>>()?;
    let dev = Pool::new(
        &edges,
        PoolSpec {
            name: "toy.device",
            acquirer: Endpoint::Stream("produce"),
            releaser: Endpoint::Stream("consume"),
        },
        dev_bufs,
    )?;
    dev.set_skip_acquire_wait(opts.skip_acquire_wait);
    let out_bufs = (0..depth).map(|_| backend.alloc_pinned(bytes)).collect::<Result<Vec<_>>>()?;
    let out = Pool::new(
        &edges,
        PoolSpec {
            name: "toy.output",
            acquirer: Endpoint::Stream("consume"),
            releaser: Endpoint::Host("deliver"),
        },
        out_bufs,
    )?;
    let filled = edges.declare(EdgeDecl {
        name: "toy.filled",
        producer: Endpoint::Stream("produce"),
        consumer: Endpoint::Stream("consume"),
        guards: "device slot contents",
        kind: EdgeKind::Event,
        per_slot: true,
    })?;
    let copied = edges.declare(EdgeDecl {
        name: "toy.copied",
        producer: Endpoint::Stream("consume"),
        consumer: Endpoint::Host("deliver"),
        guards: "output slot contents",
        kind: EdgeKind::GenCounter,
        per_slot: true,
    })?;
    let gate = edges.declare(EdgeDecl {
        name: "toy.gate",
        producer: Endpoint::Stream("produce"),
        consumer: Endpoint::Stream("consume"),
        guards: "nothing: the mutation test's injected delay",
        kind: EdgeKind::GenCounter,
        per_slot: false,
    })?;

    let mismatches = Arc::new(Mutex::new(Vec::new()));
    let checked = Arc::new(Mutex::new(0usize));
    let mut rng = opts.seed | 1;
    for i in 0..opts.iterations {
        let slot = i % depth;
        let lease = sched.run_stage("produce", slot, || {
            let lease = dev.acquire(slot, produce)?;
            delay(&*backend, produce.raw(), &mut rng, opts.max_delay_us)?;
            backend.fill_u32(produce.raw(), lease.buffer(), pattern(i))?;
            edges.record(&filled, slot, produce)?;
            if opts.gate_first_copy && i == depth {
                edges.publish(&gate, 0, 1, produce)?;
            }
            Ok(lease)
        })?;
        let out_lease = sched.run_stage("consume", slot, || {
            edges.wait(&filled, slot, consume)?;
            if opts.gate_first_copy && i == 0 {
                edges.wait_value(&gate, 0, 1, consume)?;
            }
            delay(&*backend, consume.raw(), &mut rng, opts.max_delay_us)?;
            let out_lease = out.acquire(slot, consume)?;
            backend.copy_to_pinned(consume.raw(), out_lease.buffer(), lease.buffer())?;
            edges.publish(&copied, slot, out_lease.generation() + 1, consume)?;
            dev.release(lease, consume)?;
            Ok(out_lease)
        })?;
        let (b, e, c, o) =
            (Arc::clone(&backend), Arc::clone(&edges), Arc::clone(&copied), out.clone());
        let (m, n) = (Arc::clone(&mismatches), Arc::clone(&checked));
        let job_delay =
            if opts.max_delay_us == 0 { 0 } else { next(&mut rng) % (opts.max_delay_us + 1) };
        sched.submit_move(slot, move || {
            e.host_wait_value(&c, slot, out_lease.generation() + 1, "deliver")?;
            crate::sync::sleep(Duration::from_micros(job_delay));
            let expected = pattern(i);
            b.write_pinned(out_lease.buffer(), |bytes| {
                let bad = bytes
                    .chunks_exact(4)
                    .map(|w| u32::from_ne_bytes([w[0], w[1], w[2], w[3]]))
                    .find(|&w| w != expected);
                if let Some(found) = bad {
                    lock(&m).push((i, expected, found));
                }
                // Poison so that a copy that never happens next time cannot pass.
                bytes.chunks_exact_mut(4).for_each(|w| w.copy_from_slice(&POISON.to_ne_bytes()));
            });
            *lock(&n) += 1;
            o.release_host(out_lease, "deliver")
        })?;
    }
    for slot in 0..depth {
        sched.join_move(slot)?;
    }
    let report = sched.shutdown(&[&dev, &out]);
    let checked = *lock(&checked);
    let mismatches = lock(&mismatches).clone();
    Ok(ToyOutcome { checked, mismatches, report, depth })
}
