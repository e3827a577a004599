//! GPU tests (`_gpu`) of the device zstd frame check: the kernel's verdicts equal its
//! host twin's bit for bit (valid frames, every corrupt case, the fuzz corpus and
//! thousands of mutated frames), and its cost per GB of frames checked.

use std::collections::BTreeSet;

use cudarc::driver::sys;

use super::frame_cases::{
    FrameCase, corpus_seeds, corrupt_cases, host_verdict, mutated, valid_frames,
};
use super::frames::twin_verdicts;
use super::gpu::{Gpu, gpu, r, u64s, zstd_chunks};
use super::reference::Rng;
use crate::desc::{FrameVerdict, ZstdFrames};
use crate::error::Error;
use crate::zstd_frame::FrameFault;

const POISON: u8 = 0xab;

/// Device copies of `cases`: every frame in one buffer, back to back (a read past a
/// frame's end lands in the next frame and changes its verdict), and the three arrays.
struct DeviceFrames {
    _bytes: gpu_schedule::CudaDeviceMem,
    ptrs: gpu_schedule::CudaDeviceMem,
    sizes: gpu_schedule::CudaDeviceMem,
    expected: gpu_schedule::CudaDeviceMem,
    count: u32,
    compressed: u64,
}

impl DeviceFrames {
    fn new(g: &Gpu, cases: &[FrameCase]) -> Self {
        let mut packed = Vec::new();
        let mut offsets = Vec::with_capacity(cases.len());
        for c in cases {
            offsets.push(packed.len() as u64);
            packed.extend_from_slice(&c.frame);
        }
        let bytes = g.up(&packed);
        let ptrs: Vec<u64> = offsets.iter().map(|o| bytes.device_ptr() + o).collect();
        let sizes: Vec<u64> = cases.iter().map(|c| c.frame.len() as u64).collect();
        let expected: Vec<u64> = cases.iter().map(|c| c.expected).collect();
        Self {
            ptrs: g.up(&u64s(&ptrs)),
            sizes: g.up(&u64s(&sizes)),
            expected: g.up(&u64s(&expected)),
            _bytes: bytes,
            count: cases.len() as u32,
            compressed: packed.len() as u64,
        }
    }

    fn frames(&self) -> ZstdFrames {
        ZstdFrames {
            count: self.count,
            comp_ptrs: r(&self.ptrs),
            comp_bytes: r(&self.sizes),
            expected: r(&self.expected),
        }
    }
}

/// The kernel's verdicts on `cases`, written over poison.
fn kernel_verdicts(g: &Gpu, cases: &[FrameCase]) -> Vec<FrameVerdict> {
    let d = DeviceFrames::new(g, cases);
    let verdicts = g.up(&vec![POISON; cases.len() * FrameVerdict::BYTES as usize]);
    // SAFETY: every pointer names a frame of its size inside `d`, which lives until the
    // synchronizing download.
    unsafe { g.kernels.check_zstd_frames(&g.stream, &d.frames(), r(&verdicts)) }
        .expect("the frame check launches");
    FrameVerdict::from_bytes(&g.down(&verdicts))
}

/// Asserts the kernel's verdicts equal the twin's and the host check's; returns the
/// codes seen.
fn assert_kernel_is_the_twin(g: &Gpu, cases: &[FrameCase]) -> BTreeSet<u32> {
    let got = kernel_verdicts(g, cases);
    let twin = twin_verdicts(cases);
    assert_eq!(got.len(), cases.len());
    let mut seen = BTreeSet::new();
    let mut differ = 0;
    let mut first = None;
    for ((c, k), t) in cases.iter().zip(&got).zip(&twin) {
        if bytemuck::bytes_of(k) != bytemuck::bytes_of(t) {
            differ += 1;
            first.get_or_insert(format!("{}: kernel {k:?}, twin {t:?}", c.name));
        }
        assert_eq!(*t, host_verdict(c), "{}: the twin differs from the host check", c.name);
        seen.insert(k.code);
    }
    assert!(first.is_none(), "{differ} of {} verdicts differ; first {first:?}", cases.len());
    for (c, k) in cases.iter().zip(&got) {
        assert_eq!(k.result(), crate::check_zstd_frame(&c.frame, c.expected), "{}", c.name);
    }
    seen
}

#[test]
fn frame_check_kernel_matches_its_twin_on_valid_corrupt_and_fuzzed_frames_gpu() {
    let g = gpu();
    let mut rng = Rng::new(30);
    let valid = valid_frames(&mut rng);
    assert_eq!(assert_kernel_is_the_twin(&g, &valid), BTreeSet::from([0]));
    let all: BTreeSet<u32> = (0..=FrameFault::ALL.len() as u32).collect();
    assert_eq!(assert_kernel_is_the_twin(&g, &corrupt_cases(&mut rng)), all);
    let seeds = corpus_seeds();
    assert!(seeds.len() >= 9);
    assert_kernel_is_the_twin(&g, &seeds);
    // Thousands of mutated frames in one launch (many blocks of threads).
    let mut bases = valid;
    bases.extend(
        seeds.into_iter().filter(|c| crate::check_zstd_frame(&c.frame, c.expected).is_ok()),
    );
    let fuzzed = mutated(&mut rng, &bases, 20_000);
    assert_eq!(assert_kernel_is_the_twin(&g, &fuzzed), all);
}

#[test]
fn frame_check_kernel_refuses_short_arrays_and_launches_nothing_for_no_frames_gpu() {
    let g = gpu();
    let mut rng = Rng::new(31);
    let cases = valid_frames(&mut rng);
    let d = DeviceFrames::new(&g, &cases[..2]);
    let verdicts = g.up(&[POISON; 48]);
    let short = r(&verdicts).slice(0, 47).unwrap();
    // SAFETY: refused before launch.
    let e = unsafe { g.kernels.check_zstd_frames(&g.stream, &d.frames(), short) };
    assert!(matches!(e, Err(Error::BufferTooSmall { what: "verdicts", needed: 48, .. })), "{e:?}");
    let none = ZstdFrames { count: 0, ..d.frames() };
    // SAFETY: no frame is read.
    unsafe { g.kernels.check_zstd_frames(&g.stream, &none, r(&verdicts)) }.unwrap();
    assert_eq!(g.down(&verdicts), vec![POISON; 48], "no frames, no verdicts written");
    // SAFETY: both frames live in `d` until the download.
    unsafe { g.kernels.check_zstd_frames(&g.stream, &d.frames(), r(&verdicts)) }.unwrap();
    assert_eq!(FrameVerdict::from_bytes(&g.down(&verdicts)), vec![FrameVerdict::OK; 2]);
}

/// A CUDA event with timing, for the cost measurement.
struct TimingEvent(sys::CUevent);

impl TimingEvent {
    fn new() -> Self {
        let mut e = std::ptr::null_mut();
        // SAFETY: a valid out-pointer; the caller bound the context.
        unsafe { sys::cuEventCreate(&mut e, 0) }.result().expect("cuEventCreate");
        Self(e)
    }
}

impl Drop for TimingEvent {
    fn drop(&mut self) {
        // SAFETY: created above, destroyed once.
        let _ = unsafe { sys::cuEventDestroy_v2(self.0) };
    }
}

/// Median milliseconds of the frame check over `d`, each run after a 256 MiB memset that
/// evicts the frames' headers from L2 (frames arriving by GPUDirect Storage are not in
/// cache either), timed with events around the launch alone.
fn time_check(g: &Gpu, d: &DeviceFrames) -> f32 {
    let flush = gpu_schedule::Backend::alloc_device(&g.backend, 256 << 20).unwrap();
    g.backend.bind().unwrap();
    let verdicts = g.up(&vec![POISON; d.count as usize * FrameVerdict::BYTES as usize]);
    let (start, stop) = (TimingEvent::new(), TimingEvent::new());
    let s = g.stream.cu_stream();
    let mut times = Vec::new();
    for run in 0..23 {
        // SAFETY: `flush` holds 256 MiB; events and stream are live in this context.
        unsafe {
            sys::cuMemsetD8Async(flush.device_ptr(), run as u8, 256 << 20, s).result().unwrap();
            sys::cuEventRecord(start.0, s).result().unwrap();
        }
        // SAFETY: frames live in `d` until the synchronize below.
        unsafe { g.kernels.check_zstd_frames(&g.stream, &d.frames(), r(&verdicts)) }.unwrap();
        // SAFETY: as above.
        unsafe { sys::cuEventRecord(stop.0, s).result().unwrap() };
        gpu_schedule::Backend::synchronize(&g.backend, &g.stream).unwrap();
        let mut ms = 0f32;
        // SAFETY: both events completed (the stream was synchronized).
        unsafe { sys::cuEventElapsedTime_v2(&mut ms, start.0, stop.0) }.result().unwrap();
        if run >= 3 {
            times.push(ms);
        }
    }
    let v = FrameVerdict::from_bytes(&g.down(&verdicts));
    assert!(v.iter().all(|x| *x == FrameVerdict::OK), "every frame of the measurement passes");
    times.sort_by(f32::total_cmp);
    times[times.len() / 2]
}

/// `n` copies of `distinct`, each its own bytes in device memory.
fn replicate(distinct: &[FrameCase], n: usize) -> Vec<FrameCase> {
    (0..n).map(|i| distinct[i % distinct.len()].clone()).collect()
}

#[test]
fn frame_check_cost_per_gb_gpu() {
    let g = gpu();
    let mut rng = Rng::new(32);
    let frame = |name: &str, f: Vec<u8>, n: usize| FrameCase {
        name: name.into(),
        frame: f,
        expected: n as u64,
    };
    let mut scenarios: Vec<(&str, Vec<FrameCase>)> = Vec::new();
    // u16-like chunks (about 1.3x), as the bench's datasets: 1 MiB (8 blocks) and 64 KiB.
    let (_, big) = zstd_chunks(&mut rng, 16, 1 << 20);
    let big: Vec<FrameCase> = big.into_iter().map(|f| frame("1MiB", f, 1 << 20)).collect();
    let (_, small) = zstd_chunks(&mut rng, 64, 64 << 10);
    let small: Vec<FrameCase> = small.into_iter().map(|f| frame("64KiB", f, 64 << 10)).collect();
    // The worst case per compressed byte: RLE blocks of 4 bytes standing for 128 KiB each.
    let zeros = zstd::bulk::compress(&vec![0u8; 64 << 20], 3).unwrap();
    let zeros = vec![frame("zeros", zeros, 64 << 20)];
    let per = |v: &[FrameCase]| v.iter().map(|c| c.frame.len()).sum::<usize>() / v.len();
    scenarios.push(("1 MiB chunks, level 3", replicate(&big, (2usize << 30) / per(&big))));
    scenarios.push(("64 KiB chunks, level 3", replicate(&small, (2usize << 30) / per(&small))));
    scenarios.push(("64 MiB of zeros (RLE blocks)", replicate(&zeros, 8192)));
    for (name, cases) in &scenarios {
        // libzstd cuts a frame into blocks of at most 128 KiB of content.
        let blocks: u64 = cases.iter().map(|c| c.expected.div_ceil(128 << 10)).sum();
        let decoded: u64 = cases.iter().map(|c| c.expected).sum();
        let d = DeviceFrames::new(&g, cases);
        let ms = time_check(&g, &d);
        let s = f64::from(ms) / 1e3;
        println!(
            "frame check cost, {name}: {} frames, ~{blocks} blocks, {:.3} GB compressed, {:.3} GB decoded: {ms:.3} ms per launch = {:.1} GB/s compressed, {:.1} GB/s decoded, {:.4} ms per compressed GB",
            d.count,
            d.compressed as f64 / 1e9,
            decoded as f64 / 1e9,
            d.compressed as f64 / 1e9 / s,
            decoded as f64 / 1e9 / s,
            f64::from(ms) / (d.compressed as f64 / 1e9),
        );
        assert!(ms > 0.0);
    }
}
