//! Plans of the `default` batch against a warm decoded-chunk cache (every stored chunk a
//! hit), from 1, 2 and 4 threads at once, as the engines' preparers make them
//! (`cargo bench -p planner --bench cached_plan`). The probe mirrors the engines' one
//! (`damacy::decoded_cache::CacheProbe`): one `chunk_cache::Probe` per plan, each hit
//! pinned until the plan is dropped. With the lookups made back to back after the walk,
//! the cache's lock is held only for them, so plans on several threads overlap.

use std::sync::Arc;
use std::time::Instant;

use chunk_cache::{ChunkCache, Lookup, Pin, Policy, Probe};
use planner::{ChunkProbe, OutDtype, PlanLimits, StoredChunk};

mod default_batch;
use default_batch::batch;

type Key = (Arc<str>, u64, u64);
type Cache = ChunkCache<Key, u64>;

struct CacheProbe<'a> {
    probe: Probe<'a, Key, u64>,
    pins: Vec<Pin<Key, u64>>,
}

impl ChunkProbe for CacheProbe<'_> {
    fn probe(&mut self, c: &StoredChunk<'_>) -> Option<u32> {
        let k = (Arc::clone(c.key), c.offset, c.nbytes);
        match self.probe.lookup_ready_or_claim(&k, c.decompressed) {
            Lookup::Hit(pin) => {
                self.pins.push(pin);
                u32::try_from(self.pins.len() - 1).ok()
            }
            // A warm cache holds every chunk.
            Lookup::Claimed(_) | Lookup::Miss => None,
        }
    }

    fn done(&mut self) {
        self.probe.unlock();
    }
}

/// One plan with the cache; its pins released as an engine releases a batch's.
fn plan_cached(cache: &Cache, arrays: &[planner::ArrayEntry], samples: &[planner::SampleInput]) {
    let limits = PlanLimits::default();
    let mut probe = CacheProbe { probe: cache.probe(), pins: Vec::new() };
    let plan = planner::plan_with_probe(arrays, samples, &limits, OutDtype::F32, &mut probe)
        .expect("the default batch plans");
    let CacheProbe { probe: held, pins } = probe;
    drop(held);
    assert_eq!(plan.stats.copy_chunks, 0, "a warm cache serves every stored chunk");
    Pin::release_all(pins);
}

fn main() {
    let (arrays, samples) = batch();
    let limits = PlanLimits::default();
    let plain = planner::plan(&arrays, &samples, &limits, OutDtype::F32).unwrap();
    let cache: Cache = ChunkCache::new(u64::MAX / 2, Policy::Clock);
    for c in &plain.chunks {
        if let planner::ChunkSource::Copy { read, offset_in_read, compressed_len, .. } = c.source {
            let op = &plain.reads[read];
            let key =
                (Arc::clone(&plain.files[op.file].key), op.offset + offset_in_read, compressed_len);
            cache.insert(key, 0, c.decompressed_len());
        }
    }
    println!("default batch: {} stored chunks cached", cache.stats().entries);
    let rounds = 200;
    for threads in [1usize, 2] {
        let t0 = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    for _ in 0..rounds {
                        drop(planner::plan(&arrays, &samples, &limits, OutDtype::F32));
                    }
                });
            }
        });
        let wall = t0.elapsed().as_secs_f64();
        println!(
            "no cache, {threads} thread(s): {:.3} ms of wall per plan",
            wall * 1e3 / (threads * rounds) as f64
        );
    }
    for threads in [1usize, 2, 4] {
        let t0 = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    for _ in 0..rounds {
                        plan_cached(&cache, &arrays, &samples);
                    }
                });
            }
        });
        let wall = t0.elapsed().as_secs_f64();
        let plans = (threads * rounds) as f64;
        println!(
            "{threads} thread(s): {:.3} ms per plan on each thread, {:.3} ms of wall per plan \
             ({} cores here)",
            wall * 1e3 * threads as f64 / plans,
            wall * 1e3 / plans,
            std::thread::available_parallelism().map_or(1, |n| n.get()),
        );
    }
}
