//! Slot cache throughput: 100k requests over 10k distinct keys with capacity 4k, each miss
//! completed at once, the owner watermark trailing 64 requests behind (as a prefetcher's
//! lookahead would). Reported per request by dividing the iteration time by 100k.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prefetch_cache::SlotCache;
use splitmix::splitmix64;

const REQUESTS: u64 = 100_000;
const KEYS: u64 = 10_000;
const CAPACITY: usize = 4_096;

fn keys() -> Vec<u64> {
    // A fixed splitmix64 stream: uniform keys, reproducible across runs.
    (0..REQUESTS).map(|i| splitmix64(0, i) % KEYS).collect()
}

fn run(keys: &[u64]) -> u64 {
    let cache: SlotCache<u64, u64, ()> = SlotCache::new(CAPACITY);
    let mut fetched = 0;
    for (seq, &k) in (0u64..).zip(keys) {
        if seq >= 64 {
            cache.advance_watermark(seq - 64);
        }
        let r = cache.request(k, seq).expect("4k slots cannot all be pinned by 64 owners");
        if r.must_fetch {
            cache.complete(r.handle, Ok(k));
            fetched += 1;
        }
    }
    fetched
}

fn bench(c: &mut Criterion) {
    let keys = keys();
    let mut g = c.benchmark_group("slot_cache");
    g.throughput(Throughput::Elements(REQUESTS));
    g.bench_function("100k_requests_10k_keys_cap_4k", |b| b.iter(|| run(&keys)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
