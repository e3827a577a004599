//! Cache lookups of whole batches from several threads at once, as the CUDA engine's
//! preparers make them on a warm cache (every lookup a hit): one lock per lookup against
//! one `Probe` per batch (`cargo bench -p chunk-cache --bench probe`).

use std::sync::Arc;

use chunk_cache::{ChunkCache, Lookup, Pin, Policy};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

type Key = (Arc<str>, u64, u64);

/// Chunks per batch: `default`'s 128 crops touch about this many.
const PER_BATCH: u64 = 5760;
/// Cached chunks: `default`'s 8,080 stored chunks.
const CHUNKS: u64 = 8080;

fn warm_cache() -> (ChunkCache<Key, u64>, Vec<Key>) {
    let c = ChunkCache::new(CHUNKS * 64, Policy::Clock);
    let files: Vec<Arc<str>> =
        (0..32).map(|f| Arc::from(format!("/data/default/array_{}/c/0/{f}", f % 8))).collect();
    let keys: Vec<Key> =
        (0..CHUNKS).map(|i| (Arc::clone(&files[(i % 32) as usize]), i * 4096, 4000)).collect();
    for k in &keys {
        c.insert(k.clone(), 0, 64);
    }
    (c, keys)
}

/// One batch's lookups: a lock each (`probe` false) or one probe.
fn batch(c: &ChunkCache<Key, u64>, keys: &[Key], start: u64, probe: bool) {
    let mut pins = Vec::with_capacity(PER_BATCH as usize);
    let mut held = probe.then(|| c.probe());
    for i in 0..PER_BATCH {
        let k = &keys[((start + i * 7) % CHUNKS) as usize];
        let hit = match &mut held {
            Some(p) => p.lookup_ready_or_claim(k, 64),
            None => c.lookup_ready_or_claim(k, 64),
        };
        if let Lookup::Hit(pin) = hit {
            pins.push(pin);
        }
    }
    drop(held);
    Pin::release_all(pins);
}

fn bench(cr: &mut Criterion) {
    let (c, keys) = warm_cache();
    let mut g = cr.benchmark_group("batch_of_5760_hits");
    g.sample_size(20);
    for threads in [1usize, 4] {
        for probe in [false, true] {
            let name = if probe { "one_probe" } else { "lock_per_lookup" };
            g.bench_with_input(BenchmarkId::new(name, threads), &threads, |b, &n| {
                b.iter(|| {
                    std::thread::scope(|s| {
                        for t in 0..n {
                            let (c, keys) = (&c, &keys);
                            s.spawn(move || batch(c, keys, t as u64 * 1000, probe));
                        }
                    });
                });
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
