//! The decoded-chunk cache (`Config::chunk_cache_bytes`), in host memory (host engine)
//! and in device memory (CUDA engine, here on the simulated device; the `_gpu` twins are
//! in `device.rs`): batches with the cache equal batches without it (with eviction, over
//! several epochs, both policies), memory stays within the budget, a rewritten shard
//! misses and reads its new bytes; the device cache counts in the GPU budget.

use std::path::{Path, PathBuf};

use bench::Scenario;
use damacy::{Backend, ChunkCachePolicy, Config, OutDtype, Pipeline, Sample};

/// A dataset of `scenario` (JSON) generated into `dir`.
fn dataset(scenario: &str, dir: &Path) -> Scenario {
    let sc = Scenario::from_json(scenario, Path::new("test")).expect("scenario");
    bench::datagen::generate(&sc, dir, 2, &|_| {}).expect("generate");
    sc
}

/// Two 64³ u16 arrays in 32×32×64 shards of 16³ chunks (the `smoke` layout): 1 MiB
/// decoded, 128 chunks of 8 KiB.
const SMOKE: &str = r#"{
  "name": "cache-smoke",
  "arrays": [{"count": 2, "name_prefix": "vol_", "shape": [64, 64, 64], "dtype": "uint16",
              "shard_shape": [32, 32, 64], "chunk_shape": [16, 16, 16],
              "codec": {"id": "zstd", "level": 3}}],
  "sample_shape": [16, 16, 16], "samples_per_batch": 4,
  "warmup_batches": 0, "timed_batches": 1, "seed": 7, "output_dtype": "f32"
}"#;

fn crops(sc: &Scenario, dir: &Path, n: usize) -> Vec<Sample> {
    sc.samples(dir).take(n).map(|(uri, lo, hi)| Sample::new(uri, lo, hi).unwrap()).collect()
}

/// Both engines: the host engine, and the CUDA engine on the simulated device.
pub(crate) const ENGINES: [Backend; 2] = [Backend::Host, Backend::Simulated];

/// The builder both engines' configurations start from: small device budgets (the
/// simulated device allocates them in host memory), and one batch preparer, so that the
/// host engine's single flight (a batch waits for a chunk an earlier one is decoding)
/// holds on every machine (with more preparers, `auto` on a large one, a pending chunk is
/// decoded again: `cached_batches_prepared_out_of_order_equal_uncached_ones`). Three
/// batch buffers, not the 8 these small batches get on the device engine by default: the
/// pins of 8 batches in flight can hold a tiny cache whole, which then refuses claims
/// where these tests are about eviction.
pub(crate) fn base(backend: Backend) -> damacy::ConfigBuilder {
    Config::builder()
        .backend(backend)
        .decode_threads(2)
        .prepare_threads(1)
        .batches_in_flight(3)
        .max_gpu_memory_bytes(256 << 20)
        .max_pinned_host_bytes(64 << 20)
        .gpu_wave_slots(2)
}

fn config(cache: u64, policy: ChunkCachePolicy) -> Config {
    config_on(Backend::Host, cache, policy)
}

fn config_on(backend: Backend, cache: u64, policy: ChunkCachePolicy) -> Config {
    base(backend)
        .sample_shape([16, 16, 16])
        .samples_per_batch(4)
        .dtype(OutDtype::F32)
        .chunk_cache_bytes(cache)
        .chunk_cache_policy(policy)
        .build()
        .unwrap()
}

/// Every batch's bytes, and the pipeline's stats at the end; `on_pop` sees each stats
/// snapshot after a pop.
fn run(
    cfg: Config,
    epochs: &[Vec<Sample>],
    mut on_pop: impl FnMut(&damacy::Stats),
) -> (Vec<Vec<u8>>, damacy::Stats) {
    let mut p = Pipeline::new(cfg).unwrap();
    let mut out = Vec::new();
    for epoch in epochs {
        let n = epoch.len() / 4;
        p.push(epoch.clone()).unwrap();
        for _ in 0..n {
            let b = p.pop().unwrap().expect("a batch");
            assert!(b.errors().is_empty());
            out.push(b.data().unwrap().to_vec());
            on_pop(&p.stats());
        }
    }
    p.finish();
    assert!(p.pop().unwrap().is_none());
    let stats = p.stats();
    (out, stats)
}

#[test]
fn cached_batches_equal_uncached_ones_over_epochs_with_eviction() {
    let dir = tempfile::tempdir().unwrap();
    let sc = dataset(SMOKE, dir.path());
    let epoch = crops(&sc, dir.path(), 200);
    let (plain, s0) = run(config(0, ChunkCachePolicy::Clock), std::slice::from_ref(&epoch), |_| {});
    assert_eq!(s0.chunk_cache, Default::default(), "no cache, no counts");
    for (engine, policy) in ENGINES
        .into_iter()
        .flat_map(|e| [ChunkCachePolicy::Lru, ChunkCachePolicy::Clock].map(|p| (e, p)))
    {
        // A quarter of the decoded dataset: eviction all along.
        let cap = 256 << 10;
        let epochs = vec![epoch.clone(), epoch.clone(), epoch.clone()];
        let (cached, s) = run(config_on(engine, cap, policy), &epochs, |s| {
            assert!(s.chunk_cache.bytes <= cap, "{:?}", s.chunk_cache);
        });
        assert_eq!(cached.len(), 3 * plain.len());
        for (i, b) in cached.iter().enumerate() {
            assert!(b == &plain[i % plain.len()], "{engine:?} {policy:?}: batch {i} differs");
        }
        let c = s.chunk_cache;
        assert!(
            c.hits > 0 && c.evictions > 0 && c.inserts > c.evictions,
            "{engine:?} {policy:?}: {c:?}"
        );
        assert_eq!(c.capacity_bytes, cap);
        assert_eq!(c.entries, c.bytes / (16 * 16 * 16 * 2));
        // Hits are not read or decoded: fewer bytes decoded than without the cache.
        assert!(s.bytes_decoded < 3 * s0.bytes_decoded, "{engine:?} {policy:?}");
    }
}

/// Issue 18: batches prepared on four threads, each later batch ready first
/// (`PrepareOutOfOrder`), with a cache a quarter of the data: on both engines the bytes
/// of one preparer without a cache, over three epochs. With several preparers a chunk
/// still being decoded under another batch's claim is decoded again, never waited for
/// (a later batch may hold the claim), so nothing hangs either.
#[test]
fn cached_batches_prepared_out_of_order_equal_uncached_ones() {
    let dir = tempfile::tempdir().unwrap();
    let sc = dataset(SMOKE, dir.path());
    // 50 batches per epoch: every even batch has a next one to wait for.
    let epoch = crops(&sc, dir.path(), 200);
    let (plain, _) = run(config(0, ChunkCachePolicy::Clock), std::slice::from_ref(&epoch), |_| {});
    for engine in ENGINES {
        let cfg = base(engine)
            .sample_shape([16, 16, 16])
            .samples_per_batch(4)
            .dtype(OutDtype::F32)
            .chunk_cache_bytes(256 << 10)
            .prepare_threads(4)
            .build()
            .unwrap();
        let mut p = Pipeline::new(cfg).unwrap();
        p.inject_fault(damacy::fault::Fault::PrepareOutOfOrder, u32::MAX);
        for e in 0..3 {
            p.push(epoch.clone()).unwrap();
            for (i, want) in plain.iter().enumerate() {
                let b = p.pop().unwrap().expect("a batch");
                assert!(b.errors().is_empty(), "{engine:?}: {:?}", b.errors());
                assert!(b.data().unwrap() == want.as_slice(), "{engine:?}: epoch {e} batch {i}");
            }
        }
        let s = p.stats();
        assert_eq!(s.prepare_threads, 4);
        assert!(s.chunk_cache.hits > 0 && s.chunk_cache.evictions > 0, "{:?}", s.chunk_cache);
        assert_eq!(s.chunk_cache.joined, 0, "{engine:?}: no batch waits on another's claim");
    }
}

#[test]
fn a_cache_holding_the_dataset_serves_later_epochs_without_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let sc = dataset(SMOKE, dir.path());
    let epoch = crops(&sc, dir.path(), 200);
    let (plain, _) = run(config(0, ChunkCachePolicy::Clock), std::slice::from_ref(&epoch), |_| {});
    for engine in ENGINES {
        let mut p = Pipeline::new(config_on(engine, 4 << 20, ChunkCachePolicy::Clock)).unwrap();
        for e in 0..3 {
            p.push(epoch.clone()).unwrap();
            p.reset_stats();
            for (i, want) in plain.iter().enumerate() {
                let b = p.pop().unwrap().unwrap();
                assert!(b.data().unwrap() == want.as_slice(), "epoch {e} batch {i}");
            }
            let s = p.stats();
            if e == 2 {
                // Every chunk was decoded in earlier epochs; epoch 2's plans (made after
                // epoch 1's batches ran, the lookahead being far shorter than an epoch) hit.
                assert_eq!(s.chunk_cache.misses, 0, "{:?}", s.chunk_cache);
                assert_eq!(s.chunks_decoded, 0, "{engine:?}");
                assert!(s.chunk_cache.hits > 0);
            }
            assert_eq!(s.chunk_cache.evictions, 0);
        }
    }
}

/// Two 64×128×128 u16 arrays of 8×32×48 chunks (x not a power of two, so crops cut
/// chunks at every offset): 4 MiB decoded.
const GATHER: &str = r#"{
  "name": "cache-gather",
  "arrays": [{"count": 2, "name_prefix": "vol_", "shape": [64, 128, 128], "dtype": "uint16",
              "shard_shape": [32, 64, 96], "chunk_shape": [8, 32, 48],
              "codec": {"id": "zstd", "level": 1}}],
  "sample_shape": [64, 64, 64], "samples_per_batch": 64,
  "warmup_batches": 0, "timed_batches": 1, "seed": 11, "output_dtype": "f32"
}"#;

/// The host engine gathers each output row from its pieces (cache hits sample by sample;
/// a read job's chunks side by side) and writes batch buffers of 64 MiB and more with
/// streaming stores: uncached batches of that size hold the generator's values, and
/// cached ones equal them, with the whole dataset cached (every piece of every row a hit)
/// and with a cache of a sixth of it (rows with gaps, written by read jobs), for rows of
/// whole cache lines (64³ f32) and rows that start and end inside lines (6×30×50 u16,
/// native output).
#[test]
fn large_cached_batches_gathered_row_by_row_equal_uncached_ones() {
    let dir = tempfile::tempdir().unwrap();
    let sc = dataset(GATHER, dir.path());
    let all: Vec<(Vec<u64>, usize, OutDtype)> =
        vec![(vec![64, 64, 64], 64, OutDtype::F32), (vec![6, 30, 50], 1000, OutDtype::Native)];
    for (shape, per_batch, dtype) in all {
        let mut shaped = sc.clone();
        shaped.sample_shape = shape.clone();
        let epoch = crops(&shaped, dir.path(), 2 * per_batch);
        let read = |cache: u64, epochs: usize| {
            let cfg = base(Backend::Host)
                .sample_shape(shape.clone())
                .samples_per_batch(per_batch)
                .dtype(dtype)
                .batches_in_flight(2)
                .batches_per_plan(1)
                .chunk_cache_bytes(cache)
                .build()
                .unwrap();
            let mut p = Pipeline::new(cfg).unwrap();
            let mut out = Vec::new();
            for _ in 0..epochs {
                p.push(epoch.clone()).unwrap();
                for _ in 0..2 {
                    let b = p.pop().unwrap().expect("a batch");
                    assert!(b.errors().is_empty());
                    out.push(b.data().unwrap().to_vec());
                }
            }
            (out, p.stats().chunk_cache)
        };
        let (plain, _) = read(0, 1);
        // Uncached batches (gathered by their read jobs) hold the generator's values: every
        // voxel of every seventh sample (crops at many offsets, in both batches).
        let n: u64 = shape.iter().product();
        let arrays = sc.array_instances();
        for (k, sample) in epoch.iter().enumerate().step_by(7) {
            let seed = arrays
                .iter()
                .find(|a| dir.path().join(&a.name) == sample.uri())
                .map(|a| a.seed)
                .expect("the sample's array");
            let batch = &plain[k / per_batch];
            let mut c = vec![0u64; shape.len()];
            for i in 0..n {
                let mut rest = i;
                for a in (0..shape.len()).rev() {
                    c[a] = sample.aabb().lo[a] + rest % shape[a];
                    rest /= shape[a];
                }
                let want = bench::datagen::stored_value(
                    zarr::DataType::UInt16,
                    bench::datagen::voxel(seed, &c),
                );
                let at = (k % per_batch) as u64 * n + i;
                let got = if dtype == OutDtype::F32 {
                    let at = at as usize * 4;
                    f64::from(f32::from_ne_bytes(batch[at..at + 4].try_into().unwrap()))
                } else {
                    let at = at as usize * 2;
                    f64::from(u16::from_ne_bytes([batch[at], batch[at + 1]]))
                };
                assert_eq!(got, want, "{shape:?}: sample {k} at {c:?}");
            }
        }
        // The premise: the buffer (sized for the dtype's widest element) is 64 MiB or more.
        let voxels = per_batch as u64 * shape.iter().product::<u64>();
        assert!(voxels * dtype.max_size() as u64 >= 64 << 20, "{shape:?}");
        assert_eq!(plain[0].len() as u64, voxels * if dtype == OutDtype::F32 { 4 } else { 2 });
        for cache in [8 << 20, 700 << 10] {
            let (cached, c) = read(cache, 3);
            assert!(c.hits > 0, "{shape:?} {cache}: {c:?}");
            if cache < 1 << 20 {
                // Samples of hits and misses both: rows with gaps.
                assert!(c.misses > c.hits, "{shape:?} {cache}: {c:?}");
            }
            for (i, b) in cached.iter().enumerate() {
                assert!(b == &plain[i % 2], "{shape:?}, cache {cache}: batch {i} differs");
            }
        }
    }
}

#[test]
fn memory_stays_within_the_budget_over_a_thousand_batches() {
    let dir = tempfile::tempdir().unwrap();
    let sc = dataset(SMOKE, dir.path());
    let cap = 100 << 10; // 12 chunks: far below the working set
    for engine in ENGINES {
        let cfg = config_on(engine, cap, ChunkCachePolicy::Clock);
        let (batches, s) = run(cfg, &[crops(&sc, dir.path(), 4000)], |s| {
            assert!(s.chunk_cache.bytes <= cap, "{engine:?}: {:?}", s.chunk_cache);
        });
        assert_eq!(batches.len(), 1000);
        assert!(s.chunk_cache.evictions > 100, "{engine:?}: {:?}", s.chunk_cache);
    }
}

/// One 128×16×16 u16 array of eight 16³ shards (two chunks each); one sample per shard.
fn strip(seed: u64) -> String {
    format!(
        r#"{{"name": "strip", "arrays": [{{"count": 1, "name_prefix": "vol_", "shape": [128, 16, 16],
        "dtype": "uint16", "shard_shape": [16, 16, 16], "chunk_shape": [8, 16, 16],
        "codec": {{"id": "zstd", "level": 3}}}}], "sample_shape": [16, 16, 16],
        "samples_per_batch": 1, "warmup_batches": 0, "timed_batches": 1, "seed": {seed},
        "output_dtype": "native"}}"#
    )
}

fn shard_crops(array: &Path) -> Vec<Sample> {
    (0..8u64)
        .map(|k| Sample::new(array, vec![16 * k, 0, 0], vec![16 * k + 16, 16, 16]).unwrap())
        .collect()
}

fn strip_config(cache: u64) -> Config {
    strip_config_on(Backend::Host, cache)
}

fn strip_config_on(engine: Backend, cache: u64) -> Config {
    base(engine)
        .sample_shape([16, 16, 16])
        .samples_per_batch(1)
        .dtype(OutDtype::Native)
        .lookahead(1)
        .max_shards_per_sample(1)
        // (lookahead + 2 × batch) × shards per sample: the smallest allowed, so shard 0's
        // index is evicted (and fetched again) by the time epoch 2 reaches it.
        .shard_index_cache_capacity(3)
        .chunk_cache_bytes(cache)
        .build()
        .unwrap()
}

fn read_all(cfg: Config, samples: Vec<Sample>) -> Vec<Vec<u8>> {
    let n = samples.len();
    let mut p = Pipeline::new(cfg).unwrap();
    p.push(samples).unwrap();
    (0..n).map(|_| p.pop().unwrap().unwrap().data().unwrap().to_vec()).collect()
}

#[test]
fn a_shard_rewritten_between_epochs_misses_and_reads_its_new_bytes() {
    let (old_dir, new_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    dataset(&strip(1), old_dir.path());
    dataset(&strip(2), new_dir.path());
    let array = old_dir.path().join("vol_0000");
    let shard: PathBuf = array.join("c/0/0/0");
    let new_shard = new_dir.path().join("vol_0000/c/0/0/0");
    let (old_bytes, new_bytes) =
        (std::fs::read(&shard).unwrap(), std::fs::read(&new_shard).unwrap());
    // The rewrite changes the chunks' stored sizes (what the cache key sees).
    assert_ne!(old_bytes.len(), new_bytes.len());
    let fresh_new = read_all(strip_config(0), shard_crops(&new_dir.path().join("vol_0000")));
    let fresh_old = read_all(strip_config(0), shard_crops(&array));
    assert_ne!(fresh_new[0], fresh_old[0]);

    for engine in ENGINES {
        std::fs::write(&shard, &old_bytes).unwrap();
        let mut p = Pipeline::new(strip_config_on(engine, 1 << 20)).unwrap();
        p.push(shard_crops(&array)).unwrap();
        for want in &fresh_old {
            assert!(p.pop().unwrap().unwrap().data().unwrap() == want.as_slice(), "{engine:?}");
        }
        std::fs::write(&shard, &new_bytes).unwrap();
        p.reset_stats();
        p.push(shard_crops(&array)).unwrap();
        let first = p.pop().unwrap().unwrap();
        assert!(first.data().unwrap() == fresh_new[0].as_slice(), "{engine:?}: served stale bytes");
        drop(first);
        for want in &fresh_old[1..] {
            assert!(p.pop().unwrap().unwrap().data().unwrap() == want.as_slice(), "{engine:?}");
        }
        let c = p.stats().chunk_cache;
        // Shard 0's two chunks missed; the other seven shards' fourteen chunks hit.
        assert_eq!((c.misses, c.hits), (2, 14), "{engine:?}: {c:?}");
    }
}

#[test]
fn the_device_cache_counts_in_the_gpu_budget() {
    let cfg = |cache: u64| {
        base(Backend::Simulated)
            .sample_shape([16, 16, 16])
            .chunk_cache_bytes(cache)
            .build()
            .unwrap()
    };
    // 64 MiB of cache fits the 256 MiB budget; 256 MiB does not.
    assert!(Pipeline::new(cfg(64 << 20)).is_ok());
    match Pipeline::new(cfg(256 << 20)) {
        Err(damacy::Error::Budget { knob: "max_gpu_memory_bytes", needed, limit }) => {
            assert_eq!(limit, 256 << 20);
            assert!(needed > 256 << 20, "{needed}");
        }
        other => panic!("expected a max_gpu_memory_bytes budget error, got {:?}", other.err()),
    }
}

#[test]
fn batches_in_flight_decode_each_chunk_once() {
    // With room for everything, a chunk missed by several batches in flight is decoded
    // by the first (its claim) and waited for by the others: decodes == distinct chunks.
    let dir = tempfile::tempdir().unwrap();
    let sc = dataset(SMOKE, dir.path());
    let epoch = crops(&sc, dir.path(), 200);
    let (plain, _) = run(config(0, ChunkCachePolicy::Clock), std::slice::from_ref(&epoch), |_| {});
    let (cached, s) =
        run(config(4 << 20, ChunkCachePolicy::Clock), std::slice::from_ref(&epoch), |_| {});
    assert!(cached == plain);
    let c = s.chunk_cache;
    assert_eq!(s.chunks_decoded, c.inserts, "{c:?}");
    assert_eq!((c.entries, c.evictions, c.abandoned), (c.inserts, 0, 0), "{c:?}");
    assert!(c.entries <= 128, "smoke has 128 chunks: {c:?}");
}

#[test]
fn a_corrupt_chunk_shared_by_batches_in_flight_fails_each_of_them_and_nothing_hangs() {
    let dir = tempfile::tempdir().unwrap();
    dataset(SMOKE, dir.path());
    let array = dir.path().join("vol_0000");
    // Chunk (0,0,0): first entry of shard (0,0,0); break its zstd magic number.
    let shard = array.join("c/0/0/0");
    let mut bytes = std::fs::read(&shard).unwrap();
    let meta =
        zarr::ArrayMetadata::parse(&std::fs::read(array.join("zarr.json")).unwrap()).unwrap();
    let zarr::ArrayToBytes::Sharding(codec) = &meta.codecs.array_to_bytes else {
        panic!("sharded")
    };
    let index = zarr::ShardIndex::of_shard(codec, 2 * 2 * 4, &bytes).unwrap();
    let r = index.chunk_range(0).unwrap().expect("chunk (0,0,0) stored");
    bytes[r.start as usize] ^= 0xff;
    std::fs::write(&shard, bytes).unwrap();

    let cfg = Config::builder()
        .sample_shape([16, 16, 16])
        .samples_per_batch(1)
        .backend(Backend::Host)
        .decode_threads(2)
        .chunk_cache_bytes(4 << 20)
        // One batch a plan: batches planned together decode the chunk once, so claims
        // (what this is about) are only between plans.
        .batches_per_plan(1)
        .build()
        .unwrap();
    let mut p = Pipeline::new(cfg).unwrap();
    let bad = Sample::new(&array, vec![0; 3], vec![16; 3]).unwrap();
    let good = Sample::new(&array, vec![16, 0, 0], vec![32, 16, 16]).unwrap();
    p.push(std::iter::repeat_n(bad, 20).chain([good])).unwrap();
    p.finish();
    let (mut decode, mut shared) = (0, 0);
    for i in 0..20 {
        match p.pop() {
            Err(damacy::Error::Sample { source, .. }) => match *source {
                damacy::SampleError::Decode { chunk, .. } => {
                    assert_eq!(chunk, [0, 0, 0]);
                    decode += 1;
                }
                damacy::SampleError::SharedDecodeFailed { chunk, path } => {
                    assert_eq!(
                        (chunk.as_slice(), path.ends_with("c/0/0/0")),
                        (&[0, 0, 0][..], true)
                    );
                    shared += 1;
                }
                other => panic!("batch {i}: {other:?}"),
            },
            other => panic!(
                "batch {i}: expected a sample error, got {:?}",
                other.map(|b| b.map(|b| b.errors().len()))
            ),
        }
    }
    assert!(decode >= 1, "the first batch decodes it itself");
    assert_eq!(decode + shared, 20);
    let last = p.pop().unwrap().expect("the good batch");
    assert!(last.errors().is_empty());
    assert!(p.pop().unwrap().is_none());
    assert_eq!(p.stats().chunk_cache.abandoned, decode, "each failed decode abandons its claim");
}
