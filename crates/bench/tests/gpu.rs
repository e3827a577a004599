//! The bench on the CUDA engine (compiled only with the `cuda` feature; run on a GPU host
//! through `cargo xtask test-gpu` or the bundle).

use bench::{BenchOptions, Scenario};
use damacy::Backend;

#[test]
fn smoke_bench_on_the_cuda_engine_measures_the_nvcomp_ceiling_gpu() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = BenchOptions {
        scenario: Scenario::builtin("smoke").expect("smoke"),
        data_dir: dir.path().to_owned(),
        backend: Backend::Cuda { device: 0 },
        threads: 4,
        measure_ceiling: true,
        store: bench::StoreKind::File,
        epochs: 1,
        chunk_cache_bytes: 0,
        chunk_cache_policy: Default::default(),
        gpu_wave_slots: 0,
        prepare_threads: 0,
        gds: damacy::Gds::Off,
        batches_in_flight: 0,
        batches_per_plan: 0,
        max_gpu_memory_bytes: 0,
        max_pinned_host_bytes: 0,
        trace: false,
        side_by_side: Vec::new(),
    };
    let r = bench::run(&opts, &|_| {}).expect("bench");
    assert_eq!(r.engine, "cuda");
    assert_eq!((r.batches, r.samples), (4, 16));
    // smoke's chunks are plain zstd: nvCOMP decodes them as stored.
    let gpu = r.gpu_decode_gb_per_s.expect("nvCOMP ceiling measured");
    assert!(gpu > 0.0, "{gpu}");
    assert!(r.gpu_decode_chunks_per_call.is_some_and(|n| n > 0));
    let cpu = r.cpu_ceiling_gvox_per_s.expect("CPU ceiling");
    let all = r.ceiling_gvox_per_s.expect("ceiling");
    assert!(all > cpu, "the nvCOMP term adds to the CPU ceiling: {all} vs {cpu}");
}
