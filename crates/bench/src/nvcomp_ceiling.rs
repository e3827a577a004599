//! nvCOMP alone on a dataset's own chunks: the GPU half of `damacy bench`'s decode
//! ceiling (issue 8: "nvCOMP alone on the same chunks, CPU decode alone").
//!
//! The compressed frames are uploaded once, the pointer and size arrays are built once,
//! and one output arena is reused by every call; then `ZstdDecoder::decode` runs back to
//! back on one stream for about the requested time, timed on the host around one final
//! synchronize. One call's statuses, decoded sizes and (where a reference is given) the
//! first chunk's bytes are checked before timing, so a broken measurement is `None`
//! rather than a number. Nothing here is shared with the engine: the measurement runs
//! after the pipeline was dropped, on a stream of its own.

use std::time::{Duration, Instant};

use gpu_schedule::{Backend as _, CudaBackend, CudaDeviceMem, CudaStreamHandle};
use kernels::DeviceRange;
use kernels::nvcomp::{NvcompLib, ZstdBatch, ZstdDecoder};

/// Most device memory the measurement takes (frames, outputs, pointer arrays and
/// nvCOMP's temp buffer), and at most half of what is free.
const MAX_DEVICE_BYTES: u64 = 16 << 30;
/// Alignment of every frame and output (cuMemAlloc's, beyond nvCOMP's requirements).
const ALIGN: u64 = 256;
/// Device bytes per chunk of the pointer/size arrays: five `u64` arrays and an `i32` one.
const META_PER_CHUNK: u64 = 5 * 8 + 4;
/// Poison for the output arena before the checked call (read back as `0xdeadbeef` words).
const POISON: u32 = 0xdead_beef;
/// Bounds on the number of timed calls.
const MIN_CALLS: u64 = 3;
const MAX_CALLS: u64 = 100_000;

/// What the measurement found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct GpuDecodeRate {
    /// Decoded bytes per second over the timed calls, in GB/s.
    pub gb_per_s: f64,
    /// Chunks per `decode` call.
    pub chunks_per_call: usize,
    /// Timed calls.
    pub calls: u64,
}

fn align_up(v: u64, a: u64) -> Option<u64> {
    let a = a.max(1);
    Some(v.checked_add(a - 1)? / a * a)
}

/// Device bytes of a measurement with `n` chunks per call; `None` on overflow.
fn device_bytes(frames: &[Vec<u8>], n: usize, out_stride: u64, temp: u64) -> Option<u64> {
    let mut comp = 0u64;
    for f in frames.iter().take(n) {
        comp = align_up(comp.checked_add(f.len() as u64)?, ALIGN)?;
    }
    let n = n as u64;
    comp.checked_add(n.checked_mul(out_stride)?)?
        .checked_add(n.checked_mul(META_PER_CHUNK)?)?
        .checked_add(temp)
}

/// Measures nvCOMP's batched zstd decode of `frames` (each one zstd frame of
/// `chunk_bytes` decoded bytes) on device `device`, in calls of `chunks_per_call` chunks
/// (fewer where device memory caps it; frames repeat when there are fewer than that),
/// for about `duration`. `reference`, if given, is the first frame's decoded bytes.
///
/// `None` when nvCOMP or the device is unavailable, an allocation or call fails, or the
/// checked call's results are wrong.
pub(crate) fn measure(
    device: usize,
    frames: &[Vec<u8>],
    chunk_bytes: usize,
    chunks_per_call: usize,
    reference: Option<&[u8]>,
    duration: Duration,
) -> Option<GpuDecodeRate> {
    if frames.is_empty()
        || chunk_bytes == 0
        || chunks_per_call == 0
        || kernels::nvcomp::nvcomp_disabled()
    {
        return None;
    }
    if !gpu_schedule::driver_present() {
        return None;
    }
    let lib = NvcompLib::global().ok()?;
    let backend = CudaBackend::new(device).ok()?;
    backend.context().bind_to_thread().ok()?;
    let align = lib.alignments().ok()?;
    let a = ALIGN.max(align.input as u64).max(align.output as u64);
    if !a.is_power_of_two() {
        return None;
    }
    let out_stride = align_up(chunk_bytes as u64, a)?;
    let (free, _) = backend.memory_info().ok()?;
    let cap = MAX_DEVICE_BYTES.min(free / 2);
    // Halve the batch until inputs, outputs and nvCOMP's temp buffer fit the cap.
    let mut n = chunks_per_call;
    loop {
        let temp = lib.temp_size(n, chunk_bytes).ok()? as u64;
        if device_bytes(frames, n, out_stride, temp).is_some_and(|b| b <= cap) {
            break;
        }
        n /= 2;
        if n == 0 {
            return None;
        }
    }
    let stream = backend.create_stream("nvcomp-ceiling").ok()?;
    let bufs = Buffers::new(&backend, &stream, &lib, frames, n, chunk_bytes, out_stride)?;
    let outcome = bufs.run(&backend, &stream, reference, duration);
    // Nothing may still run on the buffers when they are freed (also after a failure).
    let synced = backend.synchronize(&stream).is_ok();
    drop(bufs);
    outcome.filter(|_| synced)
}

/// Device memory of one measurement.
struct Buffers {
    decoder: ZstdDecoder,
    /// The distinct frames, each at an aligned offset.
    _comp: CudaDeviceMem,
    /// `n` outputs of `out_stride` bytes.
    out: CudaDeviceMem,
    /// `[comp ptrs][comp bytes][capacities][out ptrs][actual][statuses]`, `n` each.
    meta: CudaDeviceMem,
    n: usize,
    chunk_bytes: usize,
}

impl Buffers {
    fn new(
        backend: &CudaBackend,
        stream: &CudaStreamHandle,
        lib: &std::sync::Arc<NvcompLib>,
        frames: &[Vec<u8>],
        n: usize,
        chunk_bytes: usize,
        out_stride: u64,
    ) -> Option<Self> {
        let distinct = frames.len().min(n);
        let mut offsets = Vec::with_capacity(distinct);
        let mut host = Vec::new();
        for f in frames.iter().take(distinct) {
            let at = usize::try_from(align_up(host.len() as u64, ALIGN)?).ok()?;
            host.resize(at, 0);
            offsets.push(at as u64);
            host.extend_from_slice(f);
        }
        let comp = backend.alloc_device(host.len().max(1)).ok()?;
        backend.upload(stream, &comp, 0, &host).ok()?;
        drop(host);
        let out_len = usize::try_from((n as u64).checked_mul(out_stride)?).ok()?;
        let out = backend.alloc_device(out_len).ok()?;
        let n8 = n.checked_mul(8)?;
        let mut meta = vec![0u8; n8.checked_mul(5)?.checked_add(n.checked_mul(4)?)?];
        let (comp0, out0) = (comp.device_ptr(), out.device_ptr());
        for i in 0..n {
            let f = i % distinct;
            let fields = [
                comp0 + offsets[f],
                frames[f].len() as u64,
                chunk_bytes as u64,
                out0 + i as u64 * out_stride,
                // Decoded sizes: written by nvCOMP; 0 until then, so a call that wrote
                // nothing fails the check.
                0,
            ];
            for (k, v) in fields.into_iter().enumerate() {
                let at = k * n8 + i * 8;
                meta[at..at + 8].copy_from_slice(&v.to_ne_bytes());
            }
        }
        // Statuses start as -1 (all bits set), for the same reason.
        for b in &mut meta[5 * n8..] {
            *b = 0xff;
        }
        let d_meta = backend.alloc_device(meta.len()).ok()?;
        backend.upload(stream, &d_meta, 0, &meta).ok()?;
        // The uploads above are in stream order before every decode; synchronizing here
        // keeps the pageable staging question out of it and reports a failed copy early.
        backend.synchronize(stream).ok()?;
        let decoder = ZstdDecoder::new(std::sync::Arc::clone(lib), backend, n, chunk_bytes).ok()?;
        Some(Self { decoder, _comp: comp, out, meta: d_meta, n, chunk_bytes })
    }

    fn batch(&self) -> ZstdBatch {
        let n = self.n as u64;
        let base = self.meta.device_ptr();
        let r = |k: u64, size: u64| {
            // SAFETY: inside `meta`, which holds five arrays of `n` u64 then `n` i32.
            unsafe { DeviceRange::from_raw(base + k * n * 8, n * size) }
        };
        ZstdBatch {
            chunks: self.n,
            max_chunk_bytes: self.chunk_bytes,
            comp_ptrs: r(0, 8),
            comp_bytes: r(1, 8),
            out_capacity: r(2, 8),
            out_ptrs: r(3, 8),
            out_actual: r(4, 8),
            statuses: r(5, 4),
        }
    }

    fn decode(&self, stream: &CudaStreamHandle, batch: &ZstdBatch) -> Option<()> {
        // SAFETY: the pointer arrays name `n` frames uploaded whole at aligned offsets
        // of `comp` and `n` disjoint aligned outputs of `chunk_bytes` in `out`; all of it
        // lives until `measure` synchronized the stream. Outputs are rewritten by each
        // call, which is what is measured.
        unsafe { self.decoder.decode(stream, batch) }.ok()
    }

    /// One checked call, one timed call to size the run, then the timed run.
    fn run(
        &self,
        backend: &CudaBackend,
        stream: &CudaStreamHandle,
        reference: Option<&[u8]>,
        duration: Duration,
    ) -> Option<GpuDecodeRate> {
        let batch = self.batch();
        backend.fill_u32(stream, &self.out, POISON).ok()?;
        self.decode(stream, &batch)?;
        backend.synchronize(stream).ok()?;
        if !self.check(backend, reference) {
            return None;
        }
        let t = Instant::now();
        self.decode(stream, &batch)?;
        backend.synchronize(stream).ok()?;
        let one = t.elapsed().as_secs_f64().max(1e-6);
        let calls = ((duration.as_secs_f64() / one).ceil() as u64).clamp(MIN_CALLS, MAX_CALLS);
        let t = Instant::now();
        for _ in 0..calls {
            self.decode(stream, &batch)?;
        }
        backend.synchronize(stream).ok()?;
        let secs = t.elapsed().as_secs_f64();
        let bytes = calls as f64 * self.n as f64 * self.chunk_bytes as f64;
        (secs > 0.0).then(|| GpuDecodeRate {
            gb_per_s: bytes / secs / 1e9,
            chunks_per_call: self.n,
            calls,
        })
    }

    /// Every status 0, every decoded size `chunk_bytes`, and the first output equal to
    /// `reference` where one is given.
    fn check(&self, backend: &CudaBackend, reference: Option<&[u8]>) -> bool {
        let n = self.n;
        let mut tail = vec![0u8; n * 12];
        if backend.download(&mut tail, &self.meta, 4 * n * 8).is_err() {
            return false;
        }
        let (actual, statuses) = tail.split_at(n * 8);
        let sizes_ok = actual
            .chunks_exact(8)
            .all(|b| u64::from_ne_bytes(b.try_into().unwrap_or([0; 8])) == self.chunk_bytes as u64);
        let statuses_ok = statuses
            .chunks_exact(4)
            .all(|b| i32::from_ne_bytes(b.try_into().unwrap_or([1; 4])) == 0);
        if !(sizes_ok && statuses_ok) {
            return false;
        }
        match reference {
            Some(r) => {
                let mut first = vec![0u8; self.chunk_bytes];
                backend.download(&mut first, &self.out, 0).is_ok() && first == r
            }
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_bytes_counts_aligned_frames_outputs_metadata_and_temp() {
        let frames = vec![vec![0u8; 10], vec![0u8; 300], vec![0u8; 5]];
        // Frames at 0 and 256, then 256 + 300 rounded up to 768; the third is beyond n.
        let b = device_bytes(&frames, 2, 1024, 7).expect("no overflow");
        assert_eq!(b, 768 + 2 * 1024 + 2 * META_PER_CHUNK + 7);
        assert_eq!(device_bytes(&frames, usize::MAX, u64::MAX, 0), None);
        assert_eq!(align_up(257, 256), Some(512));
        assert_eq!(align_up(u64::MAX, 256), None);
    }
}
