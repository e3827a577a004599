//! The CUDA engine against the host engine, bit for bit (run on a GPU host through the
//! bundle; compiled only with the `cuda` feature).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, mpsc};
use std::time::Duration;

use bench::Scenario;
use damacy::fault::{Fault, INJECTED};
use damacy::{
    Backend, Config, ConfigBuilder, Error, GpuError, OnError, OutDtype, Pipeline, Sample,
    SampleError,
};
use gpu_schedule::Backend as _;

/// The fixtures with absolute paths: a bundled test binary finds `tests/data` relative
/// to the repository root it runs from, and a relative sample uri is looked up from the
/// file store's root (`/`), not from the working directory.
fn fixtures() -> Vec<crate::support::Fixture> {
    crate::support::fixtures()
        .into_iter()
        .map(|mut f| {
            f.path = std::path::absolute(&f.path).expect("absolute fixture path");
            f
        })
        .collect()
}

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

fn builder(shape: &[u64], n: usize, dtype: OutDtype, backend: Backend) -> ConfigBuilder {
    Config::builder()
        .sample_shape(shape)
        .samples_per_batch(n)
        .dtype(dtype)
        .backend(backend)
        .decode_threads(4)
        .max_shards_per_sample(4096)
        .max_gpu_memory_bytes(4 << 30)
        .max_pinned_host_bytes(80 << 20)
}

fn cfg(shape: &[u64], n: usize, dtype: OutDtype, backend: Backend) -> Config {
    builder(shape, n, dtype, backend).build().expect("config")
}

/// Sets process-wide variables for one test (the caller holds `ENV`) and removes them
/// when dropped, also when the test fails.
struct EnvVars(Vec<&'static str>);

impl EnvVars {
    fn set(vars: &[(&'static str, &str)]) -> Self {
        for (k, v) in vars {
            // SAFETY: tests touching the environment hold ENV.
            unsafe { std::env::set_var(k, v) };
        }
        Self(vars.iter().map(|(k, _)| *k).collect())
    }
}

impl Drop for EnvVars {
    fn drop(&mut self) {
        for k in &self.0 {
            // SAFETY: as in `set`; the guard lives inside the ENV lock's scope.
            unsafe { std::env::remove_var(k) };
        }
    }
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
    bench::datagen::generate(&sc, dir, 4, &|_| {}).expect("generate");
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

/// The `shard_end_u16_zstd` fixture: 8³ u16 chunks of zstd (compressed blocks, no
/// checksum) in 16³ shards with the index at the end, so chunk (0,0,0) is the frame at
/// offset 0 of shard `c/0/0/0`.
fn shard_end_fixture() -> crate::support::Fixture {
    let f = fixtures().into_iter().find(|f| f.name == "shard_end_u16_zstd");
    f.unwrap_or_else(|| panic!("no sharded zstd fixture"))
}

/// How a test breaks chunk (0,0,0)'s zstd frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Corruption {
    /// The last 40 bytes of the compressed block (its sequences' bitstream): the frame
    /// still passes the host check, so it reaches nvCOMP, and decoding it fails.
    Content,
    /// The magic number: the host check refuses the frame, which goes to the CPU decoder.
    Header,
}

/// Bytes of chunk (0,0,0) in the shard `c/0/0/0` of `array` (its index says where).
fn first_frame_range(array: &Path, shard: &[u8]) -> std::ops::Range<usize> {
    let json = std::fs::read(array.join("zarr.json")).expect("read zarr.json");
    let meta = zarr::ArrayMetadata::parse(&json).expect("zarr.json");
    let zarr::ArrayToBytes::Sharding(codec) = &meta.codecs.array_to_bytes else {
        panic!("the fixture is sharded")
    };
    // 2×2×2 chunks per shard.
    let index = zarr::ShardIndex::of_shard(codec, 8, shard).expect("shard index");
    let r = index.chunk_range(0).expect("entry 0").expect("chunk (0,0,0) is stored");
    r.start as usize..r.end as usize
}

/// Copies the fixture to `dir/a.zarr` and corrupts chunk (0,0,0) as `how` says; returns
/// the copy and the corrupted shard's path.
fn corrupt_copy(dir: &Path, how: Corruption) -> (PathBuf, PathBuf) {
    let f = shard_end_fixture();
    let copy = dir.join("a.zarr");
    crate::support::copy_dir(&f.path, &copy);
    let shard = copy.join("c/0/0/0");
    let mut bytes = std::fs::read(&shard).expect("read shard");
    let r = first_frame_range(&copy, &bytes);
    let decoded = 8 * 8 * 8 * 2;
    assert!(kernels::check_zstd_frame(&bytes[r.clone()], decoded).is_ok(), "intact frame");
    match how {
        Corruption::Content => {
            for b in &mut bytes[r.end - 40..r.end] {
                *b ^= 0xff;
            }
        }
        Corruption::Header => {
            bytes[r.start] ^= 0xff;
            bytes[r.start + 1] ^= 0xff;
        }
    }
    let passes = kernels::check_zstd_frame(&bytes[r.clone()], decoded).is_ok();
    assert_eq!(passes, how == Corruption::Content, "{how:?}: host frame check");
    std::fs::write(&shard, bytes).expect("write shard");
    (copy, shard)
}

/// Asserts `e` is the decode error of chunk (0,0,0) in `shard` (the CPU decoder's).
fn assert_decode_of_first_chunk(e: &SampleError, shard: &Path, what: &str) {
    match e {
        SampleError::Decode { path, chunk, .. } => {
            // The store key may be relative to the file store's root, `/`.
            assert_eq!(Path::new("/").join(path), shard, "{what}: path");
            assert_eq!(chunk, &vec![0, 0, 0], "{what}: chunk");
        }
        other => panic!("{what}: expected a Decode error, got {other:?}"),
    }
}

/// Asserts `e` is nvCOMP's failure on chunk (0,0,0) in `shard`, typed: the chunk's own
/// decode failure (`overrun` false), or the failure of another sample of its wave.
fn assert_nvcomp_failure_of_first_chunk(e: &SampleError, shard: &Path, overrun: bool, what: &str) {
    match e {
        SampleError::Gpu { call, chunk: Some(chunk), path: Some(path), source } => {
            assert_eq!(*call, "nvCOMP decode", "{what}: call");
            assert_eq!(Path::new("/").join(path), shard, "{what}: path");
            assert_eq!(chunk, &vec![0, 0, 0], "{what}: chunk");
            match (&**source, overrun) {
                (GpuError::ChunkDecode { status, decoded, expected }, false) => {
                    // 8³ u16.
                    assert_eq!(*expected, 1024, "{what}: expected bytes");
                    assert!(*status != 0 || *decoded != 1024, "{what}: {source:?} is no failure");
                }
                (GpuError::WaveOverrun, true) => {}
                (other, _) => panic!("{what}: overrun={overrun}, got {other:?}"),
            }
        }
        other => panic!("{what}: expected nvCOMP's failure naming the chunk, got {other:?}"),
    }
}

#[test]
fn corrupt_zstd_frame_is_a_decode_error_naming_the_chunk_and_later_batches_arrive_gpu() {
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    // nvCOMP on, and no share of the decode for the CPU workers: a frame that passes the
    // host check is decoded by nvCOMP.
    let _env = EnvVars::set(&[("DAMACY_NVCOMP", "on"), ("DAMACY_CPU_SHARE", "0")]);
    let f = shard_end_fixture();
    for how in [Corruption::Content, Corruption::Header] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (copy, shard) = corrupt_copy(dir.path(), how);
        let one =
            |uri: &Path, lo: u64| Sample::new(uri, vec![lo; 3], vec![lo + 1; 3]).expect("box");
        // The corrupt chunk; then an intact chunk of the same shard; then the original.
        let samples = vec![one(&copy, 0), one(&copy, 8), one(&f.path, 0)];
        let shape = [1u64; 3];
        // The host engine sees the same failure (the corruption is a decode failure for
        // libzstd too) and gives the references for the intact samples.
        let mut host =
            Pipeline::new(cfg(&shape, 1, OutDtype::Native, Backend::Host)).expect("host");
        host.push(samples.clone()).expect("push");
        host.finish();
        match host.pop() {
            Err(Error::Sample { source, .. }) => {
                assert_decode_of_first_chunk(&source, &shard, &format!("host {how:?}"))
            }
            other => {
                panic!("host {how:?}: expected an error, got {:?}", other.map(|b| b.is_some()))
            }
        }
        let host_rest: Vec<Vec<u8>> = (0..2)
            .map(|_| host.pop().expect("host pop").expect("host batch").to_host().expect("host"))
            .collect();
        assert!(host.pop().expect("end").is_none());

        let mut p = Pipeline::new(cfg(&shape, 1, OutDtype::Native, CUDA)).expect("pipeline");
        p.push(samples).expect("push");
        p.finish();
        match p.pop() {
            Err(Error::Sample { index, uri, source }) => {
                let what = format!("cuda {how:?}");
                assert_eq!((index, uri.as_path()), (0, copy.as_path()), "{what}: the sample");
                // A frame that passes the host check reaches nvCOMP, whose failure is typed
                // and names the sample, the chunk and the file; one that fails it is
                // decoded (and refused) by the CPU.
                match how {
                    Corruption::Content => {
                        assert_nvcomp_failure_of_first_chunk(&source, &shard, false, &what)
                    }
                    Corruption::Header => assert_decode_of_first_chunk(&source, &shard, &what),
                }
            }
            other => {
                panic!("cuda {how:?}: expected an error, got {:?}", other.map(|b| b.is_some()))
            }
        }
        for (k, want) in host_rest.iter().enumerate() {
            let b = p.pop().expect("later batch").expect("present");
            assert!(b.errors().is_empty(), "{how:?} batch {}: {:?}", k + 1, b.errors());
            assert_eq!(&b.to_host().expect("to_host"), want, "{how:?} batch {}", k + 1);
        }
        assert!(p.pop().expect("end").is_none());
    }
}

#[test]
fn on_error_fill_fills_the_failed_sample_on_the_device_and_keeps_the_others_gpu() {
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let f = shard_end_fixture();
    // The CPU decoder's cases first: each case's failure names it.
    for (how, nvcomp) in
        [(Corruption::Header, "off"), (Corruption::Header, "on"), (Corruption::Content, "on")]
    {
        let _env = EnvVars::set(&[("DAMACY_NVCOMP", nvcomp), ("DAMACY_CPU_SHARE", "0")]);
        let dir = tempfile::tempdir().expect("tempdir");
        let (copy, shard) = corrupt_copy(dir.path(), how);
        // A fill value no crop of this data holds everywhere, so the filled sample cannot
        // pass by accident (the fixture's own is 0).
        let meta_path = copy.join("zarr.json");
        let meta = std::fs::read_to_string(&meta_path).expect("zarr.json");
        assert!(meta.contains("\"fill_value\": 0"), "fixture fill value moved");
        std::fs::write(&meta_path, meta.replace("\"fill_value\": 0", "\"fill_value\": 7"))
            .expect("write zarr.json");
        let b4 = |uri: &Path, lo: [u64; 3]| {
            Sample::new(uri, lo.to_vec(), lo.iter().map(|v| v + 4).collect()).expect("box")
        };
        // Sample 1 holds the corrupt chunk (0,0,0); the others intact chunks of the copy,
        // and the original's chunk (0,0,0).
        let samples = vec![
            b4(&copy, [8, 8, 8]),
            b4(&copy, [0, 0, 0]),
            b4(&copy, [4, 8, 0]),
            b4(&f.path, [0, 0, 0]),
        ];
        let shape = [4u64; 3];
        let run = |backend| {
            let c = builder(&shape, 4, OutDtype::F32, backend)
                .on_error(OnError::Fill)
                .build()
                .expect("config");
            let mut p = Pipeline::new(c).expect("pipeline");
            p.push(samples.clone()).expect("push");
            p.finish();
            let b = p.pop().expect("pop").expect("batch");
            let errors: Vec<(u64, SampleError)> = b.errors().to_vec();
            let data = b.to_host().expect("to_host");
            assert!(p.pop().expect("end").is_none());
            (errors, data)
        };
        let what = format!("{how:?} nvcomp={nvcomp}");
        let (host_errors, host) = run(Backend::Host);
        let (errors, data) = run(CUDA);
        // The host engine fails exactly the corrupt sample.
        assert_eq!(host_errors.len(), 1, "{what} host: {host_errors:?}");
        assert_eq!(host_errors[0].0, 1, "{what} host: failed sample");
        assert_decode_of_first_chunk(&host_errors[0].1, &shard, &format!("{what} host"));
        // The CUDA engine names the corrupt sample's chunk first. A corrupt frame that
        // passed the host check can make nvCOMP write past its output into other chunks
        // of the wave (seen on the H200), so then every sample of that wave is reported
        // and filled too: never delivered as good data.
        let nvcomp_decoded_it = matches!(how, Corruption::Content) && nvcomp == "on";
        let listed: Vec<u64> = errors.iter().map(|e| e.0).collect();
        let first = errors.iter().find(|e| e.0 == 1).expect("the corrupt sample is listed");
        if nvcomp_decoded_it {
            // The corrupt sample names its chunk's failure; every other listed sample names
            // the same chunk as the cause of the possible overrun.
            assert_nvcomp_failure_of_first_chunk(&first.1, &shard, false, &what);
            for (s, e) in errors.iter().filter(|e| e.0 != 1) {
                assert_nvcomp_failure_of_first_chunk(e, &shard, true, &format!("{what} {s}"));
            }
        } else {
            assert_decode_of_first_chunk(&first.1, &shard, &format!("{what} cuda"));
            assert_eq!(listed, vec![1], "{what} cuda: {errors:?}");
        }
        let per = 4 * 4 * 4 * 4;
        assert_eq!(data.len(), 4 * per);
        for s in 0..4u64 {
            let r = s as usize * per..(s as usize + 1) * per;
            let vals: &[f32] = bytemuck::cast_slice(&data[r.clone()]);
            if listed.contains(&s) {
                // Filled with its own array's fill value: 7 in the copy, 0 in the original.
                let fill = if s == 3 { 0.0 } else { 7.0 };
                assert!(vals.iter().all(|&v| v == fill), "{what}: listed sample {s} not filled");
            } else {
                // Unlisted means intact: bit for bit the host engine's.
                assert_eq!(data[r.clone()], host[r.clone()], "{what}: intact sample {s}");
                assert!(vals.iter().any(|&v| v != 7.0), "{what}: sample {s} looks filled");
            }
        }
        if !nvcomp_decoded_it {
            assert_eq!(data, host, "{what}: whole batch");
        }
    }
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
    assert_eq!(a.data().expect("copy"), &host[0][..]);
    let ev = b.ready_event().expect("event");
    // SAFETY: the batch's own ready event, a live event of the pipeline's context.
    unsafe { b.release_event(ev) }.expect("release_event");
    drop(a);
    let mut i = 2;
    while let Some(c) = p.pop().expect("pop") {
        assert_eq!(c.to_host().expect("c"), host[i]);
        i += 1;
    }
    assert_eq!(i, host.len());
}

/// Device-to-device copy ranges of `total` bytes from `src` to `dst` in pieces of `piece`
/// bytes, uploaded for `Kernels::memcpy_batch`; returns the ranges' buffer and count.
fn copy_ranges(
    backend: &gpu_schedule::CudaBackend,
    src: u64,
    dst: u64,
    total: u64,
    piece: u64,
) -> (gpu_schedule::CudaDeviceMem, u32) {
    let ranges: Vec<kernels::CopyRange> = (0..total.div_ceil(piece))
        .map(|k| kernels::CopyRange {
            src: src + k * piece,
            dst: dst + k * piece,
            len: piece.min(total - k * piece),
        })
        .collect();
    let mem = kernels::mem::upload(backend, bytemuck::cast_slice(&ranges)).expect("upload ranges");
    (mem, ranges.len() as u32)
}

fn range_of(mem: &gpu_schedule::CudaDeviceMem) -> kernels::DeviceRange {
    // SAFETY: a live allocation of this length, kept alive by the caller.
    unsafe { kernels::DeviceRange::from_raw(mem.device_ptr(), mem.len() as u64) }
}

#[test]
fn release_event_gates_reuse_of_the_batch_buffer_gpu() {
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let (sc, samples) = smoke(dir.path());
    let n = sc.samples_per_batch as usize;
    let host = read_all(cfg(&sc.sample_shape, n, OutDtype::F32, Backend::Host), samples.clone())
        .expect("host");
    // Two batches of different crops, so a rewrite of the slot would show.
    assert_ne!(host[0], host[1], "the first two batches must differ");
    // One device batch buffer: batch 1 can only be written where batch 0 was.
    let c = builder(&sc.sample_shape, n, OutDtype::F32, CUDA)
        .batches_in_flight(1)
        .build()
        .expect("config");
    let mut p = Pipeline::new(c).expect("cuda");
    p.push(samples).expect("push");
    p.finish();
    let a = p.pop().expect("pop").expect("batch 0");
    let a_host = a.to_host().expect("a to_host");
    assert_eq!(a_host, host[0]);
    let bytes = a_host.len() as u64;
    let a_ptr = a.device_ptr().expect("device batch");
    let a_ready = a.ready_event().expect("ready event");

    // The consumer: a stream of our own on the same device (the primary context, which
    // the engine uses too).
    let backend = gpu_schedule::CudaBackend::new(0).expect("device 0");
    let k = kernels::Kernels::for_backend(&backend).expect("kernels");
    let stream = backend.create_stream("test-consumer").expect("stream");
    // Long work first: 200 copies of 1 GiB between two buffers of ours (about 200 GB of
    // copies, over 100 ms on an H200), so the engine would have rewritten the slot long
    // before our read of it if the release did not wait for our event.
    let big: u64 = 1 << 30;
    let src = backend.alloc_device(big as usize).expect("alloc src");
    let dst = backend.alloc_device(big as usize).expect("alloc dst");
    let (long, long_n) = copy_ranges(&backend, src.device_ptr(), dst.device_ptr(), big, 256 << 10);
    let scratch = backend.alloc_device(bytes as usize).expect("alloc scratch");
    let (copy, copy_n) = copy_ranges(&backend, a_ptr, scratch.device_ptr(), bytes, bytes);
    // SAFETY: `a_ready` is the batch's live event of this (primary) context.
    unsafe { backend.wait_raw_event(&stream, a_ready) }.expect("wait on ready event");
    for _ in 0..200 {
        // SAFETY: disjoint live buffers of ours, kept until the stream is synchronized.
        unsafe { k.memcpy_batch(&stream, range_of(&long), long_n) }.expect("long copy");
    }
    // SAFETY: the batch buffer (ours until released, and the release waits for `done`)
    // into our scratch buffer of the same size.
    unsafe { k.memcpy_batch(&stream, range_of(&copy), copy_n) }.expect("copy of the batch");
    let done = backend.create_event().expect("event");
    done.record(&stream).expect("record");
    // SAFETY: `done` is a live event of the device's primary context, recorded after our
    // last use of the batch, and it outlives the call.
    unsafe { a.release_event(done.raw()) }.expect("release_event");

    let b = p.pop().expect("pop").expect("batch 1");
    assert_eq!(b.device_ptr(), Some(a_ptr), "batch 1 must reuse the only buffer");
    let b_host = b.to_host().expect("b to_host");
    assert_eq!(b_host, host[1]);
    backend.synchronize(&stream).expect("synchronize");
    let mut seen = vec![0u8; bytes as usize];
    backend.download(&mut seen, &scratch, 0).expect("download scratch");
    assert!(seen != b_host, "the slot was rewritten before the consumer's event");
    assert_eq!(seen, host[0], "the consumer's copy must hold batch 0");
    drop(b);
    let mut i = 2;
    while let Some(c) = p.pop().expect("pop") {
        assert_eq!(c.to_host().expect("c"), host[i]);
        i += 1;
    }
    assert_eq!(i, host.len());
}

/// GPU memory in use on device 0 (`total - free` of `cuMemGetInfo`).
fn device_memory_used() -> u64 {
    let b = gpu_schedule::CudaBackend::new(0).expect("device 0");
    let (free, total) = b.memory_info().expect("cuMemGetInfo");
    total.saturating_sub(free)
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
            used.push(device_memory_used());
        }
        k += 1;
    }
    assert_eq!(k, 1000);
    eprintln!("GPU memory in use after 10 / 1000 batches: {used:?}");
    assert!(used[1] <= used[0] + (4 << 20), "grew: {used:?}");
}

#[test]
fn auto_runs_the_cuda_engine_and_reports_its_errors_instead_of_falling_back_gpu() {
    let shape = [4u64, 4, 4];
    let p = Pipeline::new(cfg(&shape, 1, OutDtype::F32, Backend::Auto)).expect("auto");
    assert!(matches!(p.backend(), damacy::Running::Cuda { device: 0, .. }), "{}", p.backend());
    // A budget the CUDA engine cannot fit is the caller's error, not a silent host run.
    let tiny = builder(&shape, 1, OutDtype::F32, Backend::Auto).max_gpu_memory_bytes(1 << 20);
    match Pipeline::new(tiny.build().expect("config")) {
        Err(damacy::Error::Budget { knob, .. }) => assert_eq!(knob, "max_gpu_memory_bytes"),
        Err(e) => panic!("expected a Budget error, got {e}"),
        Ok(p) => panic!("Auto fell back to {} instead of reporting the budget", p.backend()),
    }
}

/// One-chunk samples of the `shard_end_u16_zstd` fixture (1³ boxes at chunk origins), so
/// that each batch of one sample is one wave of one chunk; and the host engine's batches.
fn one_chunk_samples(n: usize) -> (Vec<Sample>, Vec<Vec<u8>>) {
    let f = shard_end_fixture();
    let samples: Vec<Sample> = (0..n)
        .map(|k| {
            let lo = [0u64, 8][k % 2];
            Sample::new(&f.path, vec![lo, 8 - lo, lo], vec![lo + 1, 9 - lo, lo + 1]).expect("box")
        })
        .collect();
    let host = read_all(cfg(&[1; 3], 1, OutDtype::Native, Backend::Host), samples.clone());
    (samples, host.expect("host"))
}

/// Asserts `e` is a batch-level failure caused by an injected driver failure: typed, for
/// the batch as a whole (no chunk), naming the failed call.
fn assert_injected_batch_failure(e: &SampleError, what: &str) {
    match e {
        SampleError::Gpu { chunk: None, path: None, source, .. } => match &**source {
            GpuError::Schedule(gpu_schedule::Error::CudaDriver { code, .. }) => {
                assert_eq!(code, INJECTED, "{what}")
            }
            other => panic!("{what}: expected the injected driver failure, got {other:?}"),
        },
        other => panic!("{what}: expected a batch-level GPU failure, got {other:?}"),
    }
}

/// Issue 14: a batch whose device work failed gives its buffer back. Before, each such
/// batch kept its buffer for good: after `batches_in_flight` failures no batch could be
/// started, and `pop` waited forever (here: `Timeout` at the third batch).
#[test]
fn device_failures_never_keep_a_batch_buffer_and_later_batches_arrive_gpu() {
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let (samples, host) = one_chunk_samples(12);
    let in_flight = 2;
    let failing = 2 * in_flight + 1;
    // A wave's device work failing (the submit thread's path), and the wait for a batch's
    // ready event failing (the harvest thread's).
    for fault in [Fault::WaveSubmit, Fault::BatchReady] {
        let c = builder(&[1; 3], 1, OutDtype::Native, CUDA)
            .batches_in_flight(in_flight)
            .build()
            .expect("config");
        let mut p = Pipeline::new(c).expect("pipeline");
        p.inject_fault(fault, failing as u32);
        p.push(samples.clone()).expect("push");
        p.finish();
        for (k, want) in host.iter().enumerate() {
            let what = format!("{fault:?} batch {k}");
            match p.pop_timeout(Duration::from_secs(60)) {
                Err(Error::Sample { index, uri, source }) if k < failing => {
                    assert_eq!((index, uri.as_path()), (k as u64, samples[k].uri()));
                    assert_injected_batch_failure(&source, &what);
                }
                Ok(Some(b)) if k >= failing => {
                    assert!(b.errors().is_empty(), "{what}: {:?}", b.errors());
                    assert_eq!(&b.to_host().expect("to_host"), want, "{what}");
                }
                other => panic!("{what}: got {:?}", other.map(|b| b.is_some())),
            }
        }
        assert!(p.pop_timeout(Duration::from_secs(60)).expect("end").is_none(), "{fault:?}");
    }
}

/// Issue 14: when even the wait after a device failure fails, the device is unusable:
/// every later batch fails at once with `DeviceBroken` (none waits for a buffer that may
/// never come back), and the pipeline still ends and drops.
#[test]
fn a_lost_device_fails_every_later_batch_at_once_gpu() {
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let (samples, host) = one_chunk_samples(8);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let c = builder(&[1; 3], 1, OutDtype::Native, CUDA)
            .batches_in_flight(2)
            .build()
            .expect("config");
        let mut p = Pipeline::new(c).expect("pipeline");
        p.inject_fault(Fault::WaveSubmit, 1);
        p.inject_fault(Fault::DeviceLost, 1);
        p.push(samples).expect("push");
        p.finish();
        let mut got = Vec::new();
        for _ in 0..9 {
            got.push(p.pop_timeout(Duration::from_secs(60)));
        }
        drop(p);
        tx.send(got).expect("send");
    });
    let got = rx.recv_timeout(Duration::from_secs(300)).expect("pop or drop hung");
    match &got[0] {
        Err(Error::Sample { index: 0, source, .. }) => {
            assert_injected_batch_failure(source, "batch 0")
        }
        other => panic!("batch 0: got {:?}", other.as_ref().map(|b| b.is_some())),
    }
    // The batch already holding the other buffer may still complete; from the first
    // batch that needs a buffer after the loss on, every one fails at once.
    let mut broken = 0;
    for (k, r) in got[1..8].iter().enumerate().map(|(i, r)| (i + 1, r)) {
        match r {
            Ok(Some(b)) if broken == 0 => {
                assert_eq!(b.to_host().expect("to_host"), host[k], "batch {k}")
            }
            Err(Error::DeviceBroken { source, .. }) => {
                broken += 1;
                match &**source {
                    GpuError::Schedule(gpu_schedule::Error::CudaDriver { code, .. }) => {
                        assert_eq!(code, INJECTED, "batch {k}")
                    }
                    other => panic!("batch {k}: {other:?}"),
                }
            }
            other => panic!("batch {k}: got {:?}", other.as_ref().map(|b| b.is_some())),
        }
    }
    assert!(broken >= 5, "only {broken} of 7 later batches failed fast");
    assert!(matches!(got[8], Ok(None)), "the end: {:?}", got[8].as_ref().map(|b| b.is_some()));
}

/// Issue 14: a panic in the CUDA engine's submit or harvest thread is an error at `pop`,
/// naming the thread and the panic, at every later `pop` too; never `Ok(None)` (the epoch
/// would end early as if complete) nor a hang. Dropping the pipeline afterwards returns.
#[test]
fn a_panicking_engine_thread_is_an_error_at_pop_and_drop_returns_gpu() {
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let (samples, _) = one_chunk_samples(4);
    for (fault, thread) in
        [(Fault::SubmitPanic, "damacy-gpu-submit"), (Fault::HarvestPanic, "damacy-gpu-harvest")]
    {
        let samples = samples.clone();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut p = Pipeline::new(cfg(&[1; 3], 1, OutDtype::Native, CUDA)).expect("pipeline");
            p.inject_fault(fault, 1);
            p.push(samples).expect("push");
            p.finish();
            let pops: Vec<String> = (0..3)
                .map(|_| match p.pop_timeout(Duration::from_secs(60)) {
                    Err(Error::EnginePanicked { thread, message }) => {
                        format!("{thread}: {message}")
                    }
                    other => format!("{:?}", other.map(|b| b.is_some())),
                })
                .collect();
            drop(p);
            tx.send(pops).expect("send");
        });
        let pops = rx.recv_timeout(Duration::from_secs(300)).expect("pop or drop hung");
        let want = format!("{thread}: injected fault {fault:?}");
        assert_eq!(pops, vec![want.clone(), want.clone(), want], "{fault:?}");
    }
}
