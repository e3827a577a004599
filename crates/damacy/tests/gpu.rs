//! GPU-only tests of the CUDA engine: a consumer's own CUDA stream and event gating the
//! reuse of a batch buffer, device memory over many batches, and `Backend::Auto` (run on a
//! GPU host through the bundle; compiled only with the `cuda` feature). The tests that run
//! on both the simulated device and a GPU are in `device.rs`.

use damacy::{Backend, OutDtype, Pipeline, Sample};
use gpu_schedule::Backend as _;

use crate::device::{CUDA, ENV, assert_rest_equal, builder, cfg, fixtures, read_all, smoke};

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
    assert_rest_equal(&mut p, &host, 2);
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
