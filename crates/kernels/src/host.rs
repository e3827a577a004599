//! Host twins of every GPU payload: the kernels of `cuda/kernels.cu` and nvCOMP's
//! batched zstd decode, on the same packed descriptors, with device addresses read as
//! host addresses.
//!
//! They are what the CUDA engine's orchestration runs on without a GPU (damacy's
//! simulated device, which CI's fault-injection tests use), and what the GPU tests
//! compare the kernels with, bit for bit. The `check_*` functions are the argument checks
//! of both: the launch wrappers in [`crate::Kernels`] and nvCOMP's decoder call them
//! before launching, each twin before touching memory, so both fail with the same
//! errors. Then a twin does the kernel's work
//! element by element in the kernel's order of operations (the casts are `crate::cast`,
//! which the CUDA source mirrors).

use std::mem::size_of;

use zarr::{DataType, OutDtype};

use crate::cast::{f16_bits_to_f32, f32_to_bf16_bits, f32_to_f16_bits};
use crate::desc::{
    CopyRange, DecodeReport, DeviceRange, FrameVerdict, PackedFill, PackedPlacement, Shuffle,
    ZstdBatch, ZstdFrames, bytes_for, need,
};
use crate::error::{Error, Result};

/// The status the host decoder reports for a frame it cannot decode (nvCOMP's
/// `nvcompErrorCannotDecompress`); 0 is success, as in nvCOMP.
pub const STATUS_CANNOT_DECOMPRESS: i32 = 12;

/// An element of `src` (`size_of_val(b)` bytes, native order) as `f32`, exactly as the
/// host engine's cast and the kernels' `to_f32` convert it.
pub(crate) fn load_f32(src: DataType, b: &[u8]) -> f32 {
    macro_rules! ne {
        ($t:ty) => {{
            let mut a = [0u8; size_of::<$t>()];
            a.copy_from_slice(&b[..size_of::<$t>()]);
            <$t>::from_ne_bytes(a)
        }};
    }
    match src {
        DataType::Bool => f32::from(u8::from(b[0] != 0)),
        DataType::Int8 => f32::from(ne!(i8)),
        DataType::UInt8 => f32::from(ne!(u8)),
        DataType::Int16 => f32::from(ne!(i16)),
        DataType::UInt16 => f32::from(ne!(u16)),
        DataType::Int32 => ne!(i32) as f32,
        DataType::UInt32 => ne!(u32) as f32,
        DataType::Int64 => ne!(i64) as f32,
        DataType::UInt64 => ne!(u64) as f32,
        DataType::Float16 => f16_bits_to_f32(ne!(u16)),
        DataType::BFloat16 => f32::from_bits(u32::from(ne!(u16)) << 16),
        DataType::Float32 => ne!(f32),
        DataType::Float64 => ne!(f64) as f32,
    }
}

/// The source data type of a kernel dtype code ([`crate::src_code`]'s inverse).
fn src_type(code: u32) -> Option<DataType> {
    DataType::ALL.into_iter().find(|&d| crate::src_code(d) == code)
}

/// The entry point that assembles into `out` (what its errors are named after).
pub(crate) fn assemble_kernel(out: OutDtype) -> &'static str {
    match out {
        OutDtype::F32 => "damacy_assemble_f32",
        OutDtype::Bf16 => "damacy_assemble_bf16",
        OutDtype::F16 => "damacy_assemble_f16",
        OutDtype::Native => "damacy_assemble_native",
    }
}

/// Reads `count` descriptors of type `T` from `range`.
///
/// # Safety
/// `range` must be readable host memory of at least `count * size_of::<T>()` bytes.
unsafe fn read_descs<T: bytemuck::Pod>(range: DeviceRange, count: u32) -> Vec<T> {
    (0..count as usize)
        .map(|i| {
            // SAFETY: inside `range` (the caller's contract); unaligned reads allowed.
            unsafe { std::ptr::read_unaligned((range.ptr() as *const T).add(i)) }
        })
        .collect()
}

/// Byte `b` of an unshuffled chunk, read from the shuffled chunk at `src` (the kernels'
/// `shuffled_byte`: c-blosc 1.x blocks, a trailing partial element in place, bit shuffle
/// only for blocks whose element count is a multiple of 8).
///
/// # Safety
/// `src` must be readable for the chunk's `nbytes` bytes.
unsafe fn shuffled_byte(src: *const u8, b: u64, p: &PackedPlacement) -> u8 {
    let at = |o: u64| {
        // SAFETY: every offset read is inside the chunk's `nbytes`, by the layout.
        unsafe { *src.add(o as usize) }
    };
    let (ts, blocksize, nbytes) = (u64::from(p.typesize), p.blocksize, p.nbytes);
    if p.shuffle == Shuffle::None as u32 || (ts <= 1 && p.shuffle == Shuffle::Byte as u32) {
        return at(b);
    }
    let start = b / blocksize * blocksize;
    let len = (nbytes - start).min(blocksize);
    let o = b - start;
    let n = len / ts;
    if o >= n * ts {
        return at(b);
    }
    let (i, j) = (o / ts, o % ts);
    if p.shuffle == Shuffle::Byte as u32 {
        return at(start + j * n + i);
    }
    if len < ts || n % 8 != 0 {
        return at(b);
    }
    let row = n >> 3;
    let planes = start + j * 8 * row + (i >> 3);
    let bit = i & 7;
    (0..8).fold(0u8, |v, k| v | (((at(planes + k * row) >> bit) & 1) << k))
}

/// Element `elem` of a placement's source, as raw little-end-first bits.
///
/// # Safety
/// The placement's `src` must hold its whole chunk.
unsafe fn load_raw(p: &PackedPlacement, size: usize, elem: u64) -> [u8; 8] {
    let base = p.src as *const u8;
    let mut raw = [0u8; 8];
    for (k, r) in raw.iter_mut().take(size).enumerate() {
        let b = elem * size as u64 + k as u64;
        // SAFETY: inside the chunk (the caller's contract).
        *r = unsafe { shuffled_byte(base, b, p) };
    }
    raw
}

/// Element offsets (source, destination) of element `e` of a box, in C order.
fn box_offsets(extent: &[u32], ss: &[u64], ds: &[u64], e: u32) -> (u64, u64) {
    let (mut so, mut dof, mut row) = (0u64, 0u64, e);
    for a in (0..extent.len()).rev() {
        let ext = extent[a].max(1);
        let c = row % ext;
        row /= ext;
        so += u64::from(c) * ss[a];
        dof += u64::from(c) * ds[a];
    }
    (so, dof)
}

/// Stores one element of the output (kind `out`, element `d`).
///
/// # Safety
/// `out` must be writable for element `d` of the output's element size.
unsafe fn store(out: *mut u8, kind: OutDtype, src: DataType, d: u64, raw: [u8; 8]) {
    let (bytes, width): ([u8; 8], usize) = match kind {
        OutDtype::F32 => (widen(&load_f32(src, &raw).to_ne_bytes()), 4),
        OutDtype::Bf16 => (widen(&f32_to_bf16_bits(load_f32(src, &raw)).to_ne_bytes()), 2),
        OutDtype::F16 => (widen(&f32_to_f16_bits(load_f32(src, &raw)).to_ne_bytes()), 2),
        OutDtype::Native => (raw, src.size()),
    };
    // SAFETY: the caller's contract.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), out.add(d as usize * width), width);
    }
}

fn widen(b: &[u8]) -> [u8; 8] {
    let mut w = [0u8; 8];
    w[..b.len()].copy_from_slice(b);
    w
}

/// What [`assemble`] checks before it touches memory: what the kernel's wrapper checks
/// before it launches.
///
/// # Errors
/// [`Error::BufferTooSmall`], [`Error::Misaligned`].
pub fn check_assemble(
    out: OutDtype,
    dst: DeviceRange,
    descs: DeviceRange,
    count: u32,
) -> Result<()> {
    let name = assemble_kernel(out);
    need(name, "descriptors", descs, bytes_for(name, count, size_of::<PackedPlacement>())?)?;
    let align = match out {
        OutDtype::Native => DataType::Float64.size() as u64,
        other => other.size(DataType::UInt8) as u64,
    };
    if !dst.ptr().is_multiple_of(align) {
        return Err(Error::Misaligned { index: 0, addr: dst.ptr(), align });
    }
    Ok(())
}

/// The host twin of [`crate::Kernels::assemble`]: gathers and casts `count` packed
/// placements from `descs` into `dst`.
///
/// # Errors
/// As [`check_assemble`].
///
/// # Safety
/// As [`crate::Kernels::assemble`], with host memory for device memory.
pub unsafe fn assemble(
    out: OutDtype,
    dst: DeviceRange,
    descs: DeviceRange,
    count: u32,
) -> Result<()> {
    check_assemble(out, dst, descs, count)?;
    // SAFETY: `descs` holds `count` descriptors (checked, and the caller's contract).
    for p in unsafe { read_descs::<PackedPlacement>(descs, count) } {
        let Some(src) = src_type(p.src_dtype) else { continue };
        let rank = (p.rank as usize).min(crate::MAX_RANK);
        let (ext, ss, ds) = (&p.extent[..rank], &p.src_stride[..rank], &p.dst_stride[..rank]);
        for e in 0..p.count {
            let (so, dof) = box_offsets(ext, ss, ds, e);
            // SAFETY: the descriptor was packed for this source and output.
            unsafe {
                let raw = load_raw(&p, src.size(), p.src_base + so);
                store(dst.ptr() as *mut u8, out, src, p.dst_base + dof, raw);
            }
        }
    }
    Ok(())
}

/// What [`fill`] checks before it touches memory.
///
/// # Errors
/// [`Error::BadBox`] for an element size other than 1, 2, 4, 8; [`Error::BufferTooSmall`];
/// [`Error::Misaligned`].
pub fn check_fill(elem_size: u32, dst: DeviceRange, boxes: DeviceRange, count: u32) -> Result<()> {
    let name = "damacy_fill";
    if !matches!(elem_size, 1 | 2 | 4 | 8) {
        return Err(Error::BadBox {
            index: 0,
            what: "fill element size must be 1, 2, 4 or 8",
            axis: 0,
            value: u64::from(elem_size),
            limit: 8,
        });
    }
    need(name, "fill boxes", boxes, bytes_for(name, count, size_of::<PackedFill>())?)?;
    if !dst.ptr().is_multiple_of(u64::from(elem_size)) {
        return Err(Error::Misaligned { index: 0, addr: dst.ptr(), align: u64::from(elem_size) });
    }
    Ok(())
}

/// The host twin of [`crate::Kernels::fill`]: writes each box's value into `dst`.
///
/// # Errors
/// As [`check_fill`].
///
/// # Safety
/// As [`crate::Kernels::fill`], with host memory for device memory.
pub unsafe fn fill(elem_size: u32, dst: DeviceRange, boxes: DeviceRange, count: u32) -> Result<()> {
    check_fill(elem_size, dst, boxes, count)?;
    let zero = [0u64; crate::MAX_RANK];
    let width = elem_size as usize;
    // SAFETY: `boxes` holds `count` boxes (checked, and the caller's contract).
    for f in unsafe { read_descs::<PackedFill>(boxes, count) } {
        let rank = (f.rank as usize).min(crate::MAX_RANK);
        let value = f.value.to_le_bytes();
        for e in 0..f.count {
            let (_, dof) = box_offsets(&f.extent[..rank], &zero[..rank], &f.dst_stride[..rank], e);
            let d = (f.dst_base + dof) as usize * width;
            // SAFETY: the box was packed for this output (the caller's contract).
            unsafe {
                std::ptr::copy_nonoverlapping(value.as_ptr(), (dst.ptr() as *mut u8).add(d), width);
            }
        }
    }
    Ok(())
}

/// What [`memcpy_batch`] checks before it touches memory.
///
/// # Errors
/// [`Error::BufferTooSmall`] when `ranges` holds fewer than `count`.
pub fn check_memcpy_batch(ranges: DeviceRange, count: u32) -> Result<()> {
    let name = "damacy_memcpy";
    need(name, "ranges", ranges, bytes_for(name, count, size_of::<CopyRange>())?)
}

/// The host twin of [`crate::Kernels::memcpy_batch`].
///
/// # Errors
/// As [`check_memcpy_batch`].
///
/// # Safety
/// As [`crate::Kernels::memcpy_batch`], with host memory for device memory.
pub unsafe fn memcpy_batch(ranges: DeviceRange, count: u32) -> Result<()> {
    check_memcpy_batch(ranges, count)?;
    // SAFETY: `ranges` holds `count` ranges (checked); each names valid memory.
    for r in unsafe { read_descs::<CopyRange>(ranges, count) } {
        // SAFETY: the caller's contract: valid, non-overlapping ranges.
        unsafe {
            std::ptr::copy_nonoverlapping(r.src as *const u8, r.dst as *mut u8, r.len as usize);
        }
    }
    Ok(())
}

/// What [`status_reduce`] checks before it touches memory.
///
/// # Errors
/// [`Error::BufferTooSmall`], [`Error::Misaligned`].
pub fn check_status_reduce(
    statuses: DeviceRange,
    actual: DeviceRange,
    expected: DeviceRange,
    count: u32,
    report: DeviceRange,
) -> Result<()> {
    let name = "damacy_status_reduce";
    need(name, "statuses", statuses, bytes_for(name, count, 4)?)?;
    need(name, "actual sizes", actual, bytes_for(name, count, 8)?)?;
    need(name, "expected sizes", expected, bytes_for(name, count, 8)?)?;
    need(name, "report", report, DecodeReport::BYTES)?;
    if !report.ptr().is_multiple_of(4) {
        return Err(Error::Misaligned { index: 0, addr: report.ptr(), align: 4 });
    }
    Ok(())
}

/// The host twin of [`crate::Kernels::status_reduce`]: writes the report's two words.
///
/// # Errors
/// As [`check_status_reduce`].
///
/// # Safety
/// Every range must be host memory of its length.
pub unsafe fn status_reduce(
    statuses: DeviceRange,
    actual: DeviceRange,
    expected: DeviceRange,
    count: u32,
    report: DeviceRange,
) -> Result<()> {
    check_status_reduce(statuses, actual, expected, count, report)?;
    // SAFETY: lengths checked above.
    let (s, a, e) = unsafe {
        (
            read_descs::<i32>(statuses, count),
            read_descs::<u64>(actual, count),
            read_descs::<u64>(expected, count),
        )
    };
    let failing = (0..count as usize).filter(|&i| s[i] != 0 || a[i] != e[i]);
    let (mut first, mut failures) = (u32::MAX, 0u32);
    for i in failing {
        first = first.min(i as u32);
        failures += 1;
    }
    let words = [first, failures];
    // SAFETY: the report holds two u32 words (checked).
    unsafe { std::ptr::copy_nonoverlapping(words.as_ptr(), report.ptr() as *mut u32, 2) };
    Ok(())
}

/// What [`zstd_decode`] checks before it touches memory.
///
/// # Errors
/// [`Error::BufferTooSmall`] when an array holds fewer than `chunks` entries.
pub fn check_zstd_decode(batch: &ZstdBatch) -> Result<()> {
    let n = batch.chunks as u64;
    for (what, range, size) in [
        ("compressed pointers", batch.comp_ptrs, 8),
        ("compressed sizes", batch.comp_bytes, 8),
        ("output capacities", batch.out_capacity, 8),
        ("output pointers", batch.out_ptrs, 8),
        ("decoded sizes", batch.out_actual, 8),
        ("statuses", batch.statuses, 4),
    ] {
        need("nvcomp zstd decode", what, range, n.saturating_mul(size))?;
    }
    Ok(())
}

/// The host twin of nvCOMP's batched zstd decode (`ZstdDecoder::decode`): each frame
/// decoded into its output buffer, its decoded size in `out_actual` and its status in
/// `statuses` (0, or [`STATUS_CANNOT_DECOMPRESS`] for a frame that does not decode into
/// its capacity; its decoded size is then 0). Per-frame failures are reported there, not
/// as an `Err`, as nvCOMP does.
///
/// # Errors
/// As [`check_zstd_decode`].
///
/// # Safety
/// As `ZstdDecoder::decode`, with host memory for device memory.
pub unsafe fn zstd_decode(batch: &ZstdBatch) -> Result<()> {
    check_zstd_decode(batch)?;
    let n = u32::try_from(batch.chunks)
        .map_err(|_| Error::Overflow { index: 0, what: "nvcomp zstd decode" })?;
    // SAFETY: lengths checked above.
    let (cp, cb, cap, op) = unsafe {
        (
            read_descs::<u64>(batch.comp_ptrs, n),
            read_descs::<u64>(batch.comp_bytes, n),
            read_descs::<u64>(batch.out_capacity, n),
            read_descs::<u64>(batch.out_ptrs, n),
        )
    };
    let mut dec = zstd::bulk::Decompressor::new().ok();
    for i in 0..batch.chunks {
        // SAFETY: the caller's contract: frames of the given sizes, outputs of the given
        // capacities, not used by others until this returns.
        let (src, out) = unsafe {
            (
                std::slice::from_raw_parts(cp[i] as *const u8, cb[i] as usize),
                std::slice::from_raw_parts_mut(op[i] as *mut u8, cap[i] as usize),
            )
        };
        let decoded = dec.as_mut().and_then(|d| d.decompress_to_buffer(src, out).ok());
        let (status, actual) = match decoded {
            Some(len) => (0i32, len as u64),
            None => (STATUS_CANNOT_DECOMPRESS, 0),
        };
        // SAFETY: entry `i` of arrays of `n` entries (checked).
        unsafe {
            std::ptr::write_unaligned((batch.out_actual.ptr() as *mut u64).add(i), actual);
            std::ptr::write_unaligned((batch.statuses.ptr() as *mut i32).add(i), status);
        }
    }
    Ok(())
}

/// The name the frame check's errors carry (its entry point in `kernels.cu`).
pub(crate) const FRAME_CHECK: &str = "damacy_zstd_frame_check";

/// What [`check_zstd_frames`] checks before it touches memory: what the kernel's wrapper
/// checks before it launches.
///
/// # Errors
/// [`Error::BufferTooSmall`] when an array holds fewer than `count` entries;
/// [`Error::Misaligned`] when the verdicts are not 8-byte aligned.
pub fn check_frame_check(frames: &ZstdFrames, verdicts: DeviceRange) -> Result<()> {
    let name = FRAME_CHECK;
    let n = frames.count;
    need(name, "compressed pointers", frames.comp_ptrs, bytes_for(name, n, 8)?)?;
    need(name, "compressed sizes", frames.comp_bytes, bytes_for(name, n, 8)?)?;
    need(name, "expected sizes", frames.expected, bytes_for(name, n, 8)?)?;
    need(name, "verdicts", verdicts, bytes_for(name, n, FrameVerdict::BYTES as usize)?)?;
    if !verdicts.ptr().is_multiple_of(8) {
        return Err(Error::Misaligned { index: 0, addr: verdicts.ptr(), align: 8 });
    }
    Ok(())
}

/// The verdict of the device frame check on one frame: [`crate::check_zstd_frame`]'s
/// result as a [`FrameVerdict`] (the device kernel, `zf_check` in `kernels.cu`, must
/// give exactly this for every byte string; the GPU tests hold it to that, so the host
/// check is the one definition of a good frame).
pub fn zstd_frame_verdict(frame: &[u8], expected: u64) -> FrameVerdict {
    // Every error of the host check is a frame fault with a code (a test holds the table
    // to it); anything else would read back as an unknown code.
    FrameVerdict::of_check(&crate::check_zstd_frame(frame, expected))
        .unwrap_or(FrameVerdict { code: u32::MAX, ..FrameVerdict::OK })
}

/// The host twin of `Kernels::check_zstd_frames`: writes one [`FrameVerdict`] per frame
/// into `verdicts` ([`zstd_frame_verdict`] of each frame).
///
/// # Errors
/// As [`check_frame_check`].
///
/// # Safety
/// As `Kernels::check_zstd_frames`, with host memory for device memory: each pointer in
/// `frames.comp_ptrs` must name `comp_bytes` readable bytes, and `verdicts` must be
/// writable for `count` verdicts.
pub unsafe fn check_zstd_frames(frames: &ZstdFrames, verdicts: DeviceRange) -> Result<()> {
    check_frame_check(frames, verdicts)?;
    let n = frames.count;
    // SAFETY: lengths checked above.
    let (cp, cb, ex) = unsafe {
        (
            read_descs::<u64>(frames.comp_ptrs, n),
            read_descs::<u64>(frames.comp_bytes, n),
            read_descs::<u64>(frames.expected, n),
        )
    };
    for i in 0..n as usize {
        let frame: &[u8] = if cb[i] == 0 {
            &[]
        } else {
            // SAFETY: the caller's contract: `cb[i]` readable bytes at `cp[i]`.
            unsafe { std::slice::from_raw_parts(cp[i] as *const u8, cb[i] as usize) }
        };
        let v = zstd_frame_verdict(frame, ex[i]);
        // SAFETY: entry `i` of an array of `n` verdicts (checked).
        unsafe { std::ptr::write_unaligned((verdicts.ptr() as *mut FrameVerdict).add(i), v) };
    }
    Ok(())
}
