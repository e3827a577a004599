//! `bench::run` on the `smoke` scenario with the host engine: what it reports, and how it
//! fails; and a generated zarr v2 dataset read back through the pipeline.

use bench::{BenchError, BenchOptions, GenError, Scenario, ScenarioError};
use damacy::Backend;

fn options(scenario: Scenario, data_dir: &std::path::Path, measure_ceiling: bool) -> BenchOptions {
    BenchOptions {
        scenario,
        data_dir: data_dir.to_owned(),
        backend: Backend::Host,
        threads: 2,
        measure_ceiling,
        store: bench::StoreKind::File,
        epochs: 1,
        chunk_cache_bytes: 0,
        chunk_cache_policy: Default::default(),
        gpu_wave_slots: 0,
        prepare_threads: 0,
        gds: damacy::Gds::Off,
        batches_in_flight: 0,
        // One batch a plan: these tests compare figures across runs and epochs, and which
        // batches share a plan depends on timing (damacy's tests cover plans of several).
        batches_per_plan: 1,
        max_gpu_memory_bytes: 0,
        max_pinned_host_bytes: 0,
        trace: false,
        side_by_side: Vec::new(),
    }
}

#[test]
fn smoke_on_the_host_engine_reports_its_batches_and_the_cpu_ceiling() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sc = Scenario::builtin("smoke").expect("smoke");
    let progress = std::cell::RefCell::new(Vec::new());
    let r = bench::run(&options(sc.clone(), dir.path(), true), &|p| {
        progress.borrow_mut().push(format!("{p:?}"));
    })
    .expect("bench");
    assert_eq!((r.scenario.as_str(), r.engine, r.threads), ("smoke", "host", 2));
    // smoke: 4 timed batches of 4 samples of 16³ u16, after 1 warm-up batch.
    assert_eq!((r.batches, r.samples), (4, 16));
    assert_eq!(r.source_dtype_bytes, 2);
    assert_eq!(r.output_dtype, "f32");
    // Voxels are counted when a batch is popped: exactly the 4 timed batches' (batches
    // planned ahead of the pops, before or after the reset, do not count in the window).
    assert_eq!(r.stats.voxels_delivered, 4 * 4 * 16 * 16 * 16);
    assert_eq!(r.stats.source_bytes_delivered, 2 * 4 * 4 * 16 * 16 * 16);
    assert!(r.gvox_per_s > 0.0 && r.seconds > 0.0);
    assert!(r.read_amplification >= 1.0 && r.decode_amplification >= 1.0);
    assert_eq!((r.dataset.arrays, r.dataset.objects, r.dataset.cached), (2, 8, false));
    // The host engine has no GPU term; the ceiling is the CPU's alone.
    assert_eq!((r.gpu_decode_gb_per_s, r.gpu_decode_chunks_per_call), (None, None));
    assert!(r.cpu_decode_gb_per_s.is_some_and(|g| g > 0.0), "{:?}", r.cpu_decode_gb_per_s);
    assert_eq!(r.ceiling_gvox_per_s, r.cpu_ceiling_gvox_per_s);
    let stages: Vec<&str> = r.stages.iter().map(|s| s.stage).collect();
    assert_eq!(stages, ["plan", "io", "decode", "assemble", "pop_wait"]);
    // Each stage's per-batch share is its load times the wall time of one batch.
    let batch_ms = r.seconds * 1e3 / r.batches as f64;
    for s in &r.stages {
        assert!((s.ms_per_batch - s.load * batch_ms).abs() <= 1e-9 * batch_ms.max(1.0), "{s:?}");
    }
    assert!(r.stages.iter().any(|s| s.stage == "decode" && s.ms_per_batch > 0.0));
    let progress = progress.into_inner();
    assert!(progress.iter().any(|p| p.starts_with("Generating")), "{progress:?}");
    assert_eq!(progress.last().map(String::as_str), Some("Timed { done: 4, total: 4 }"));

    // A second run finds the dataset in place.
    let again = bench::run(&options(sc, dir.path(), false), &|_| {}).expect("bench");
    assert!(again.dataset.cached);
    assert_eq!(again.ceiling_gvox_per_s, None);
}

#[test]
fn an_invalid_scenario_is_a_dataset_error_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sc = Scenario::builtin("smoke").expect("smoke");
    sc.timed_batches = 0;
    let err = bench::run(&options(sc, dir.path(), false), &|_| {}).expect_err("invalid");
    let BenchError::Dataset(gen_err) = &err else { panic!("{err}") };
    assert!(
        matches!(&**gen_err, GenError::Scenario(ScenarioError::Invalid { field, .. }) if field == "timed_batches"),
        "{err}"
    );
    assert!(err.to_string().contains("timed_batches"), "{err}");
}

/// `--store s3`: the same scenario served by the loopback S3 server reports the same
/// counts as from files (the crops are the same), with the reads made through `s3://`.
#[test]
fn smoke_over_the_loopback_s3_server_reports_the_same_figures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sc = Scenario::builtin("smoke").expect("smoke");
    let files = bench::run(&options(sc.clone(), dir.path(), false), &|_| {}).expect("files");
    let mut opts = options(sc, dir.path(), false);
    opts.store = bench::StoreKind::S3 { latency_ms: 2.0 };
    let s3 = bench::run(&opts, &|_| {}).expect("s3");
    assert_eq!(files.store, "file");
    assert_eq!(s3.store, "s3 (loopback, 2 ms per request)");
    assert_eq!((s3.batches, s3.samples), (files.batches, files.samples));
    assert_eq!(s3.stats.voxels_delivered, files.stats.voxels_delivered);
    assert_eq!(s3.stats.source_bytes_delivered, files.stats.source_bytes_delivered);
    // The object-store gap may merge more ranges (reading through gaps), never fewer.
    assert!(s3.stats.bytes_read >= files.stats.bytes_read);
    assert!(s3.gvox_per_s > 0.0);
}

/// A scenario of zarr v2 arrays (zstd and blosc-zstd): generated, benched, and read back
/// through the pipeline, every voxel equals the generator's value.
#[test]
fn a_generated_v2_dataset_reads_back_the_generators_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sc = Scenario::builtin("smoke").expect("smoke");
    let blosc =
        bench::scenario::Codec::BloscZstd { level: 3, shuffle: bench::scenario::Shuffle::Byte };
    sc.arrays[0].shard_shape = None;
    sc.arrays[0].zarr_format = 2;
    let mut second = sc.arrays[0].clone();
    second.name_prefix = "blosc_".into();
    second.codec = blosc;
    sc.arrays.push(second);
    let r = bench::run(&options(sc.clone(), dir.path(), true), &|_| {}).expect("bench");
    assert_eq!((r.batches, r.samples), (4, 16));
    assert!(r.cpu_decode_gb_per_s.is_some_and(|g| g > 0.0), "the ceiling measures v2 chunks");
    assert!(dir.path().join("vol_0000/.zarray").is_file());
    assert!(!dir.path().join("vol_0000/zarr.json").exists());

    let samples: Vec<_> = sc.samples(dir.path()).take(12).collect();
    let cfg = damacy::Config::builder()
        .sample_shape(&sc.sample_shape)
        .samples_per_batch(samples.len())
        .dtype(damacy::OutDtype::Native)
        .backend(Backend::Host)
        .build()
        .expect("config");
    let mut p = damacy::Pipeline::new(cfg).expect("pipeline");
    let pushed: Vec<damacy::Sample> = samples
        .iter()
        .map(|(uri, lo, hi)| damacy::Sample::new(uri, lo.clone(), hi.clone()).expect("box"))
        .collect();
    p.push(pushed).expect("push");
    p.finish();
    let batch = p.pop().expect("pop").expect("a batch");
    let data = batch.data().expect("host data");
    let n: u64 = sc.sample_shape.iter().product();
    let mut arrays = std::collections::BTreeSet::new();
    for (k, (uri, lo, _)) in samples.iter().enumerate() {
        let inst = sc
            .array_instances()
            .into_iter()
            .find(|i| dir.path().join(&i.name) == *uri)
            .expect("the sample's array");
        arrays.insert(inst.name.clone());
        for i in 0..n {
            let mut c = vec![0u64; lo.len()];
            let mut rest = i;
            for a in (0..lo.len()).rev() {
                c[a] = lo[a] + rest % sc.sample_shape[a];
                rest /= sc.sample_shape[a];
            }
            let at = (k as u64 * n + i) as usize * 2;
            let got = u16::from_ne_bytes([data[at], data[at + 1]]);
            let want = bench::datagen::stored_value(
                zarr::DataType::UInt16,
                bench::datagen::voxel(inst.seed, &c),
            );
            assert_eq!(f64::from(got), want, "{} at {c:?}", inst.name);
        }
    }
    assert!(
        arrays.iter().any(|a| a.starts_with("blosc_"))
            && arrays.iter().any(|a| a.starts_with("vol_"))
    );
}

/// `--epochs 3 --chunk-cache 4M` on `smoke` (1 MiB decoded): epoch 1 fills the cache, and
/// epoch 3 decodes nothing (its plans are made after epoch 2 ran; every chunk is cached).
#[test]
fn epochs_with_a_cache_report_each_epoch_and_later_ones_decode_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = options(Scenario::builtin("smoke").expect("smoke"), dir.path(), false);
    opts.epochs = 3;
    opts.chunk_cache_bytes = 4 << 20;
    let r = bench::run(&opts, &|_| {}).expect("bench");
    let e: Vec<(u64, u64)> = r.epochs.iter().map(|e| (e.epoch, e.batches)).collect();
    // smoke: 1 warm-up and 4 timed batches; epoch 1 reports its timed window.
    assert_eq!(e, [(1, 4), (2, 5), (3, 5)]);
    assert!(r.epochs[0].chunks_decoded > 0);
    assert_eq!(r.epochs[2].chunks_decoded, 0, "{:?}", r.epochs[2]);
    assert_eq!(r.epochs[2].chunk_cache.misses, 0);
    assert!(r.epochs[2].chunk_cache.hits > 0 && r.epochs[2].gvox_per_s > 0.0);
    assert_eq!(r.stats.chunk_cache.capacity_bytes, 4 << 20);
    // One epoch, no cache: no epoch list and no cache counts.
    let plain =
        bench::run(&options(Scenario::builtin("smoke").unwrap(), dir.path(), false), &|_| {})
            .expect("bench");
    assert!(plain.epochs.is_empty());
    assert_eq!(plain.stats.chunk_cache.capacity_bytes, 0);
}

/// `side_by_side`: the pipelines run at once from a common start, each its scenario's
/// batches of its own share of the crops, with its share of the threads; the aggregate is
/// every pipeline's voxels over the common window, against the one-pipeline run.
fn side_by_side_on(backends: Vec<Backend>, engine: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let sc = Scenario::builtin("smoke").expect("smoke");
    let mut opts = options(sc, dir.path(), false);
    opts.side_by_side = backends.clone();
    let progress = std::cell::RefCell::new(Vec::new());
    let r = bench::run(&opts, &|p| {
        if let bench::BenchProgress::SideBySide { done, total } = p {
            progress.borrow_mut().push((done, total));
        }
    })
    .expect("bench");
    // The one-pipeline run is reported as without side-by-side pipelines.
    assert_eq!((r.batches, r.samples, r.threads), (4, 16, 2));
    let s = r.side_by_side.as_ref().expect("side by side report");
    assert_eq!(s.pipelines.len(), backends.len());
    let per_voxels = 4 * 4 * 16 * 16 * 16;
    for w in &s.pipelines {
        // smoke: 4 timed batches of 4 samples of 16³ each, on one thread of the two.
        assert_eq!((w.batches, w.samples, w.voxels, w.threads), (4, 16, per_voxels, 1), "{w:?}");
        assert_eq!(w.engine, engine);
        assert!(w.seconds > 0.0 && w.seconds <= s.seconds, "{w:?} in {}", s.seconds);
        assert!((w.gvox_per_s - w.voxels as f64 / w.seconds / 1e9).abs() < 1e-9);
        assert!(w.time_to_first_batch_s > 0.0);
    }
    let voxels = (per_voxels * backends.len() as u64) as f64;
    assert!((s.gvox_per_s - voxels / s.seconds / 1e9).abs() < 1e-9, "{s:?}");
    assert!((s.speedup - s.gvox_per_s / r.gvox_per_s).abs() < 1e-9, "{s:?} vs {}", r.gvox_per_s);
    // Progress counts every pipeline's warm-up and timed batches, once each.
    let progress = progress.into_inner();
    let total = backends.len() as u64 * 5;
    assert_eq!(progress.len() as u64, total);
    assert_eq!(progress.last(), Some(&(total, total)));
    let json = serde_json::to_value(&r).expect("json");
    assert_eq!(json["side_by_side"]["pipelines"].as_array().map(Vec::len), Some(backends.len()));
    // Without side-by-side backends there is no such report, nor a JSON key.
    let alone = bench::run(
        &options(Scenario::builtin("smoke").expect("smoke"), dir.path(), false),
        &|_| {},
    )
    .expect("bench");
    assert!(alone.side_by_side.is_none());
    assert!(serde_json::to_value(&alone).expect("json").get("side_by_side").is_none());
}

#[test]
fn host_pipelines_side_by_side_each_deliver_their_share_from_a_common_start() {
    side_by_side_on(vec![Backend::Host; 2], "host");
}

/// The CUDA engine's orchestration on simulated devices, one pipeline each (as one per
/// GPU runs on a two-GPU host).
#[test]
fn simulated_device_pipelines_side_by_side_each_deliver_their_share() {
    side_by_side_on(vec![Backend::Simulated; 3], "cuda");
}

/// A pipeline that cannot start fails the bench with its own error; the pipelines that
/// did start do not wait for it (the run returns).
#[test]
fn a_side_by_side_pipeline_that_cannot_start_fails_the_bench_without_hanging() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = options(Scenario::builtin("smoke").expect("smoke"), dir.path(), false);
    // A device no test machine has (and, without the `cuda` feature, no device at all).
    opts.side_by_side = vec![Backend::Host, Backend::Cuda { device: 4096 }];
    let err = bench::run(&opts, &|_| {}).expect_err("no such device");
    let BenchError::Pipeline(e) = &err else { panic!("{err}") };
    assert!(matches!(**e, damacy::Error::BackendUnavailable { .. }), "{err}");
}

#[test]
fn shares_partition_the_crop_sequence() {
    for of in 1..5 {
        let mut all: Vec<u32> = (0..of).flat_map(|i| bench::share(0..23u32, i, of)).collect();
        all.sort_unstable();
        assert_eq!(all, (0..23).collect::<Vec<_>>(), "{of} shares");
        // Share i holds every `of`-th from i, in order.
        let one: Vec<u32> = bench::share(0..23u32, 1, of).collect();
        assert_eq!(one, (1..23).step_by(of).collect::<Vec<_>>());
    }
}
