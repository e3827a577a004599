//! The CUDA engine against the host engine, bit for bit (run on a GPU host through the
//! bundle; compiled only with the `cuda` feature).

use std::path::Path;
use std::sync::Mutex;

use damacy::scenario::Scenario;
use damacy::{Backend, Config, Error, OutDtype, Pipeline, Sample, SampleError};

use crate::support::fixtures;

/// `DAMACY_NVCOMP` is process-wide: tests that set it must not overlap.
static ENV: Mutex<()> = Mutex::new(());

fn read_all(cfg: Config, samples: Vec<Sample>) -> damacy::Result<Vec<Vec<u8>>> {
    let mut p = Pipeline::new(cfg)?;
    p.push(samples)?;
    p.finish();
    let mut out = Vec::new();
    while let Some(b) = p.pop()? {
        out.push(b.to_host()?);
    }
    Ok(out)
}

fn cfg(shape: &[u64], n: usize, dtype: OutDtype, backend: Backend) -> Config {
    Config::builder()
        .sample_shape(shape)
        .samples_per_batch(n)
        .dtype(dtype)
        .backend(backend)
        .decode_threads(4)
        .max_shards_per_sample(4096)
        .max_gpu_memory_bytes(4 << 30)
        .max_pinned_host_bytes(80 << 20)
        .build()
        .expect("config")
}

const CUDA: Backend = Backend::Cuda { device: 0 };

fn fixture_parity(nvcomp: bool) -> usize {
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: tests touching the environment hold ENV.
    unsafe { std::env::set_var("DAMACY_NVCOMP", if nvcomp { "on" } else { "off" }) };
    let mut checked = 0;
    for f in fixtures() {
        for c in &f.crops {
            let shape: Vec<u64> = c.lo.iter().zip(&c.hi).map(|(l, h)| h - l).collect();
            for dtype in [OutDtype::F32, OutDtype::Bf16, OutDtype::F16, OutDtype::Native] {
                let s = vec![Sample::new(&f.path, c.lo.clone(), c.hi.clone()).expect("box")];
                let host = read_all(cfg(&shape, 1, dtype, Backend::Host), s.clone());
                let gpu = read_all(cfg(&shape, 1, dtype, CUDA), s);
                match (host, gpu) {
                    (Ok(h), Ok(g)) => {
                        assert_eq!(h, g, "{} {:?}..{:?} {dtype:?}", f.name, c.lo, c.hi);
                        checked += 1;
                    }
                    (Err(h), Err(g)) => {
                        assert_eq!(format!("{h}"), format!("{g}"), "{}: same error", f.name)
                    }
                    (h, g) => panic!("{}: host {:?} vs cuda {:?}", f.name, h.err(), g.err()),
                }
            }
        }
    }
    // SAFETY: as above.
    unsafe { std::env::remove_var("DAMACY_NVCOMP") };
    checked
}

#[test]
fn fixtures_equal_the_host_engine_with_nvcomp_gpu() {
    let n = fixture_parity(true);
    eprintln!("fixture crops x dtypes checked (nvCOMP): {n}");
    assert!(n >= 400, "only {n} checked");
}

#[test]
fn fixtures_equal_the_host_engine_without_nvcomp_gpu() {
    let n = fixture_parity(false);
    eprintln!("fixture crops x dtypes checked (CPU decode + upload): {n}");
    assert!(n >= 400, "only {n} checked");
}

fn smoke(dir: &Path) -> (Scenario, Vec<Sample>) {
    let sc = Scenario::builtin("smoke").expect("smoke");
    damacy::datagen::generate(&sc, dir, 4, &|_| {}).expect("generate");
    let samples = sc
        .samples(dir)
        .take(sc.samples_per_batch as usize * 6)
        .map(|(u, lo, hi)| Sample::new(u, lo, hi).expect("box"))
        .collect();
    (sc, samples)
}

#[test]
fn smoke_scenario_equals_the_host_engine_gpu() {
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let (sc, samples) = smoke(dir.path());
    for nvcomp in ["on", "off"] {
        // SAFETY: tests touching the environment hold ENV.
        unsafe { std::env::set_var("DAMACY_NVCOMP", nvcomp) };
        for dtype in [OutDtype::F32, OutDtype::Bf16, OutDtype::F16, OutDtype::Native] {
            let n = sc.samples_per_batch as usize;
            let host = read_all(cfg(&sc.sample_shape, n, dtype, Backend::Host), samples.clone())
                .expect("host");
            let gpu =
                read_all(cfg(&sc.sample_shape, n, dtype, CUDA), samples.clone()).expect("cuda");
            assert_eq!(host.len(), 6);
            assert!(host.iter().any(|b| b.iter().any(|&x| x != 0)), "data not all zero");
            assert_eq!(host, gpu, "smoke {dtype:?} nvcomp={nvcomp}");
        }
    }
    // SAFETY: as above.
    unsafe { std::env::remove_var("DAMACY_NVCOMP") };
}

#[test]
fn corrupt_zstd_frame_is_a_decode_error_naming_the_chunk_and_later_batches_arrive_gpu() {
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let f = fixtures().into_iter().find(|f| f.name == "shard_end_u16_zstd");
    let Some(f) = f else { panic!("no sharded zstd fixture") };
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("a.zarr");
    crate::support::copy_dir(&f.path, &copy);
    // Corrupt every stored byte after the first 64 of each shard file except zarr.json:
    // the first chunk's frame then fails (bad content or structure).
    let mut corrupted = 0;
    for e in walk(&copy) {
        if e.file_name().is_some_and(|n| n == "zarr.json") {
            continue;
        }
        let mut b = std::fs::read(&e).expect("read");
        if b.len() > 8 {
            // Break the first frame's magic (the first chunk of the shard sits at 0 for
            // index-at-end shards; at the index size otherwise). Flip a byte in both spots.
            for at in [0usize, 1] {
                b[at] ^= 0xff;
            }
            std::fs::write(&e, b).expect("write");
            corrupted += 1;
        }
    }
    assert!(corrupted > 0);
    let shape = vec![1u64; f.shape.len()];
    let mut samples = vec![Sample::new(&copy, vec![0; f.shape.len()], shape.clone()).expect("box")];
    // A later batch from the intact original.
    samples.push(Sample::new(&f.path, vec![0; f.shape.len()], shape.clone()).expect("box"));
    let mut p = Pipeline::new(cfg(&shape, 1, OutDtype::Native, CUDA)).expect("pipeline");
    p.push(samples).expect("push");
    p.finish();
    let first = p.pop();
    match first {
        Err(Error::Sample { source, .. }) => match *source {
            SampleError::Decode { chunk, .. } => assert_eq!(chunk.len(), f.shape.len()),
            SampleError::Format(_) | SampleError::Plan(_) => {}
            other => panic!("expected a decode error, got {other}"),
        },
        other => panic!("expected an error, got {:?}", other.map(|b| b.map(|b| b.id()))),
    }
    let second = p.pop().expect("second batch").expect("present");
    assert_eq!(second.shape()[0], 1);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("dir").flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

#[test]
fn too_small_gpu_budget_is_a_budget_error_at_construction_gpu() {
    let c = Config::builder()
        .sample_shape([64, 64, 64])
        .samples_per_batch(8)
        .backend(CUDA)
        .max_gpu_memory_bytes(1 << 20)
        .build()
        .expect("config");
    match Pipeline::new(c) {
        Err(Error::Budget { knob, needed, limit }) => {
            assert_eq!(knob, "max_gpu_memory_bytes");
            assert_eq!(limit, 1 << 20);
            assert!(needed > limit);
        }
        other => panic!("expected Budget, got {:?}", other.err()),
    }
}

#[test]
fn held_batches_stay_distinct_and_device_api_works_gpu() {
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let (sc, samples) = smoke(dir.path());
    let n = sc.samples_per_batch as usize;
    let host = read_all(cfg(&sc.sample_shape, n, OutDtype::F32, Backend::Host), samples.clone())
        .expect("host");
    let mut p = Pipeline::new(cfg(&sc.sample_shape, n, OutDtype::F32, CUDA)).expect("cuda");
    assert!(p.stats().gpu_bytes_committed > 0);
    p.push(samples).expect("push");
    p.finish();
    let a = p.pop().expect("pop").expect("a");
    let b = p.pop().expect("pop").expect("b");
    assert!(a.is_device() && b.is_device());
    assert_ne!(a.device_ptr(), b.device_ptr());
    assert!(a.ready_event().is_some() && a.ready_stream().is_some());
    assert_eq!(a.to_host().expect("a"), host[0]);
    assert_eq!(b.to_host().expect("b"), host[1]);
    assert_eq!(a.data(), &host[0][..]);
    let ev = b.ready_event().expect("event");
    b.release_event(ev).expect("release_event");
    drop(a);
    let mut i = 2;
    while let Some(c) = p.pop().expect("pop") {
        assert_eq!(c.to_host().expect("c"), host[i]);
        i += 1;
    }
    assert_eq!(i, host.len());
}

#[test]
fn gpu_memory_does_not_grow_over_1000_batches_gpu() {
    let f = fixtures().into_iter().find(|f| f.name == "shard_end_u16_zstd");
    let Some(f) = f else { panic!("no sharded zstd fixture") };
    let shape = vec![2u64; f.shape.len()];
    let sample = Sample::new(&f.path, vec![0; f.shape.len()], shape.clone()).expect("box");
    let mut p = Pipeline::new(cfg(&shape, 1, OutDtype::F32, CUDA)).expect("cuda");
    p.push(std::iter::repeat_n(sample, 1000)).expect("push");
    p.finish();
    let mut used = Vec::new();
    let mut k = 0;
    while let Some(b) = p.pop().expect("pop") {
        assert_eq!(b.shape()[0], 1);
        if k == 10 || k == 999 {
            used.push(damacy::cuda::device_memory_used(0).expect("cuMemGetInfo"));
        }
        k += 1;
    }
    assert_eq!(k, 1000);
    eprintln!("GPU memory in use after 10 / 1000 batches: {used:?}");
    assert!(used[1] <= used[0] + (4 << 20), "grew: {used:?}");
}
