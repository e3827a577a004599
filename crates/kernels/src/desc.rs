//! Launch descriptors: the Rust view of a placement or fill box, and its packed
//! `#[repr(C)]` form that `cuda/kernels.cu` reads (the struct layouts must match byte for
//! byte). Packing validates every box on the host, with checked arithmetic, so the
//! kernels never index outside a chunk or the output for descriptors that pass.

use bytemuck::{Pod, Zeroable};

use zarr::{DataType, OutDtype};

use crate::error::{Error, Result};
use crate::zstd_frame::FrameFault;

/// Most axes a box may have (the CUDA structs hold arrays of this length). Arrays of
/// higher rank are refused with [`Error::RankTooLarge`]; the host engine handles up to 32.
pub const MAX_RANK: usize = 8;

/// The code `kernels.cu` uses for a source element type (`enum SrcDtype` there): the
/// one place the zarr data types are mirrored for the device.
pub fn src_code(d: DataType) -> u32 {
    match d {
        DataType::Bool => 0,
        DataType::Int8 => 1,
        DataType::Int16 => 2,
        DataType::Int32 => 3,
        DataType::Int64 => 4,
        DataType::UInt8 => 5,
        DataType::UInt16 => 6,
        DataType::UInt32 => 7,
        DataType::UInt64 => 8,
        DataType::Float16 => 9,
        DataType::BFloat16 => 10,
        DataType::Float32 => 11,
        DataType::Float64 => 12,
    }
}

/// The blosc filter still present in a chunk's decoded bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u32)]
pub enum Shuffle {
    /// Plain bytes.
    #[default]
    None = 0,
    /// c-blosc byte shuffle.
    Byte = 1,
    /// c-blosc bit shuffle (only on blocks whose element count is a multiple of 8).
    Bit = 2,
}

/// How a chunk's bytes are shuffled: c-blosc 1.x blocks of `blocksize` bytes (the last
/// one shorter), each block's whole `typesize`-byte elements transposed, a trailing
/// partial element left in place. `typesize` is the frame header's, which may differ from
/// the dtype's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ShuffleSpec {
    /// The filter.
    pub shuffle: Shuffle,
    /// The frame's typesize.
    pub typesize: u32,
    /// The frame's block size in bytes.
    pub blocksize: u64,
}

/// One decoded chunk's contribution to one sample of the batch.
#[derive(Debug, Clone, Copy)]
pub struct Placement<'a> {
    /// Device address of the chunk's decoded bytes (aligned to the element size unless
    /// shuffled).
    pub src: u64,
    /// The chunk's element type.
    pub src_dtype: DataType,
    /// Blosc shuffle still to undo while gathering.
    pub shuffle: ShuffleSpec,
    /// The chunk's shape (row-major, last axis contiguous).
    pub chunk_shape: &'a [u64],
    /// Lower corner of the box inside the chunk.
    pub in_chunk_lo: &'a [u64],
    /// Index of the sample in the batch (`[N, ...sample_shape]`).
    pub sample: u64,
    /// Shape of one sample.
    pub sample_shape: &'a [u64],
    /// Lower corner of the box inside the sample.
    pub in_sample_lo: &'a [u64],
    /// The box's extent (the same in chunk and sample).
    pub extent: &'a [u64],
}

/// The packed form of a [`Placement`] (`struct Placement` in `kernels.cu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct PackedPlacement {
    /// Device address of the chunk's bytes.
    pub src: u64,
    /// Element offset of the box's first element in the chunk.
    pub src_base: u64,
    /// Element offset of the box's first element in the output.
    pub dst_base: u64,
    /// Blosc block size (shuffled sources).
    pub blocksize: u64,
    /// Bytes of the whole chunk.
    pub nbytes: u64,
    /// Axes used.
    pub rank: u32,
    /// [`src_code`] of the chunk's data type.
    pub src_dtype: u32,
    /// [`Shuffle`] code.
    pub shuffle: u32,
    /// Blosc typesize (shuffled sources).
    pub typesize: u32,
    /// Elements in the box.
    pub count: u32,
    /// Keeps the arrays 8-byte aligned.
    pub pad: u32,
    /// Extent per axis (unused axes 0).
    pub extent: [u32; MAX_RANK],
    /// Chunk strides in elements.
    pub src_stride: [u64; MAX_RANK],
    /// Output strides in elements.
    pub dst_stride: [u64; MAX_RANK],
}

/// A box of one sample to fill with one value.
#[derive(Debug, Clone, Copy)]
pub struct FillSpec<'a> {
    /// Index of the sample in the batch.
    pub sample: u64,
    /// Shape of one sample.
    pub sample_shape: &'a [u64],
    /// Lower corner of the box inside the sample.
    pub in_sample_lo: &'a [u64],
    /// The box's extent.
    pub extent: &'a [u64],
}

/// Alias kept for readers who look for the fill kernel's descriptor by its CUDA name.
pub type FillBox = PackedFill;

/// The packed form of a [`FillSpec`] plus its value (`struct FillBox` in `kernels.cu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct PackedFill {
    /// Element offset of the box's first element in the output.
    pub dst_base: u64,
    /// The element's bytes, little end first.
    pub value: u64,
    /// Axes used.
    pub rank: u32,
    /// Elements in the box.
    pub count: u32,
    /// Extent per axis.
    pub extent: [u32; MAX_RANK],
    /// Output strides in elements.
    pub dst_stride: [u64; MAX_RANK],
}

/// One raw copy for the batched memcpy kernel (`struct CopyRange` in `kernels.cu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct CopyRange {
    /// Device source address.
    pub src: u64,
    /// Device destination address.
    pub dst: u64,
    /// Bytes.
    pub len: u64,
}

fn overflow(index: usize, what: &'static str) -> Error {
    Error::Overflow { index, what }
}

/// Row-major strides of `shape`, checked.
fn strides(index: usize, shape: &[u64]) -> Result<[u64; MAX_RANK]> {
    let mut s = [0u64; MAX_RANK];
    let mut acc = 1u64;
    for a in (0..shape.len()).rev() {
        s[a] = acc;
        acc = acc.checked_mul(shape[a]).ok_or_else(|| overflow(index, "shape product"))?;
    }
    Ok(s)
}

fn product(index: usize, what: &'static str, v: &[u64]) -> Result<u64> {
    v.iter().try_fold(1u64, |acc, &x| acc.checked_mul(x).ok_or_else(|| overflow(index, what)))
}

/// Checks that `lo + extent` lies inside `shape` on every axis.
fn check_box(
    index: usize,
    what: &'static str,
    shape: &[u64],
    lo: &[u64],
    ext: &[u64],
) -> Result<()> {
    for a in 0..shape.len() {
        let hi = lo[a].checked_add(ext[a]).ok_or_else(|| overflow(index, "box corner"))?;
        if hi > shape[a] {
            return Err(Error::BadBox { index, what, axis: a, value: hi, limit: shape[a] });
        }
    }
    Ok(())
}

fn check_ranks(index: usize, lens: &[usize]) -> Result<usize> {
    let rank = lens[0];
    if rank > MAX_RANK {
        return Err(Error::RankTooLarge { index, rank, max: MAX_RANK });
    }
    for (axis, &l) in lens.iter().enumerate() {
        if l != rank {
            return Err(Error::BadBox {
                index,
                what: "shapes and boxes have different ranks",
                axis,
                value: l as u64,
                limit: rank as u64,
            });
        }
    }
    Ok(rank)
}

/// Where a sample box lands in the output: (first element, strides, one past the last).
fn place_in_output(
    index: usize,
    sample: u64,
    sample_shape: &[u64],
    lo: &[u64],
    ext: &[u64],
    out_elems: u64,
) -> Result<(u64, [u64; MAX_RANK])> {
    check_box(index, "the sample box leaves the sample", sample_shape, lo, ext)?;
    let ss = strides(index, sample_shape)?;
    let sample_elems = product(index, "sample size", sample_shape)?;
    let mut base =
        sample.checked_mul(sample_elems).ok_or_else(|| overflow(index, "sample offset"))?;
    let mut last = 0u64;
    for a in 0..sample_shape.len() {
        base = lo[a]
            .checked_mul(ss[a])
            .and_then(|o| o.checked_add(base))
            .ok_or_else(|| overflow(index, "output offset"))?;
        last = ext[a]
            .saturating_sub(1)
            .checked_mul(ss[a])
            .and_then(|o| o.checked_add(last))
            .ok_or_else(|| overflow(index, "output offset"))?;
    }
    let end = base
        .checked_add(last)
        .and_then(|e| e.checked_add(1))
        .ok_or_else(|| overflow(index, "output end"))?;
    if end > out_elems {
        return Err(Error::OutOfOutput { index, end, len: out_elems });
    }
    Ok((base, ss))
}

fn extent_u32(index: usize, ext: &[u64]) -> Result<([u32; MAX_RANK], u32)> {
    let mut e = [0u32; MAX_RANK];
    for (a, &x) in ext.iter().enumerate() {
        e[a] =
            u32::try_from(x).map_err(|_| overflow(index, "box extent (kernels index with u32)"))?;
    }
    let count = product(index, "box size", ext)?;
    let count =
        u32::try_from(count).map_err(|_| overflow(index, "box size (kernels index with u32)"))?;
    Ok((e, count))
}

/// Packs and validates placements for one assemble launch into an output of `out_elems`
/// elements of kind `out`.
///
/// Empty boxes (an extent of 0, or rank 0 for a scalar is not supported and reads as
/// rank mismatch) pack to `count == 0` and write nothing.
///
/// # Errors
/// [`Error::RankTooLarge`] above [`MAX_RANK`] axes; [`Error::BadBox`] when ranks differ,
/// a box leaves its chunk or sample, rank is 0, or a `Native` launch mixes element sizes;
/// [`Error::OutOfOutput`] when a box lands past the output; [`Error::Misaligned`] for an
/// unshuffled source not aligned to its element size; [`Error::BadShuffle`] for a
/// typesize or blocksize of 0; [`Error::Overflow`] for sizes past `u64` or boxes past the
/// kernels' `u32` indexing.
pub fn pack_placements(
    placements: &[Placement<'_>],
    out: OutDtype,
    out_elems: u64,
) -> Result<Vec<PackedPlacement>> {
    let mut packed = Vec::with_capacity(placements.len());
    let native_size = placements.first().map(|p| p.src_dtype.size());
    for (index, p) in placements.iter().enumerate() {
        let rank = check_ranks(
            index,
            &[
                p.chunk_shape.len(),
                p.in_chunk_lo.len(),
                p.sample_shape.len(),
                p.in_sample_lo.len(),
                p.extent.len(),
            ],
        )?;
        if rank == 0 {
            return Err(Error::BadBox { index, what: "rank 0", axis: 0, value: 0, limit: 1 });
        }
        if let (OutDtype::Native, Some(first)) = (out, native_size)
            && p.src_dtype.size() != first
        {
            return Err(Error::BadBox {
                index,
                what: "a native-output launch mixes element sizes",
                axis: 0,
                value: p.src_dtype.size() as u64,
                limit: first as u64,
            });
        }
        check_box(index, "the chunk box leaves the chunk", p.chunk_shape, p.in_chunk_lo, p.extent)?;
        let cs = strides(index, p.chunk_shape)?;
        let chunk_elems = product(index, "chunk size", p.chunk_shape)?;
        let size = p.src_dtype.size() as u64;
        let nbytes = chunk_elems.checked_mul(size).ok_or_else(|| overflow(index, "chunk bytes"))?;
        let mut src_base = 0u64;
        for (lo, stride) in p.in_chunk_lo.iter().zip(&cs) {
            src_base = lo
                .checked_mul(*stride)
                .and_then(|o| o.checked_add(src_base))
                .ok_or_else(|| overflow(index, "chunk offset"))?;
        }
        let (dst_base, ds) =
            place_in_output(index, p.sample, p.sample_shape, p.in_sample_lo, p.extent, out_elems)?;
        let (extent, count) = extent_u32(index, p.extent)?;
        match p.shuffle.shuffle {
            Shuffle::None => {
                if !p.src.is_multiple_of(size) {
                    return Err(Error::Misaligned { index, addr: p.src, align: size });
                }
            }
            Shuffle::Byte | Shuffle::Bit => {
                if p.shuffle.typesize == 0 || p.shuffle.blocksize == 0 {
                    return Err(Error::BadShuffle {
                        index,
                        typesize: p.shuffle.typesize,
                        blocksize: p.shuffle.blocksize,
                    });
                }
            }
        }
        // The last source byte read must not overflow a device address.
        p.src.checked_add(nbytes).ok_or_else(|| overflow(index, "source address"))?;
        packed.push(PackedPlacement {
            src: p.src,
            src_base,
            dst_base,
            blocksize: p.shuffle.blocksize,
            nbytes,
            rank: rank as u32,
            src_dtype: src_code(p.src_dtype),
            shuffle: p.shuffle.shuffle as u32,
            typesize: p.shuffle.typesize,
            count,
            pad: 0,
            extent,
            src_stride: cs,
            dst_stride: ds,
        });
    }
    Ok(packed)
}

/// Packs and validates fill boxes writing `value` (the element's bytes, 1, 2, 4 or 8 of
/// them) into an output of `out_elems` elements.
///
/// # Errors
/// As [`pack_placements`] for the boxes; [`Error::BadBox`] for a value that is not 1, 2,
/// 4 or 8 bytes long.
pub fn pack_fills(fills: &[FillSpec<'_>], value: &[u8], out_elems: u64) -> Result<Vec<PackedFill>> {
    if !matches!(value.len(), 1 | 2 | 4 | 8) {
        return Err(Error::BadBox {
            index: 0,
            what: "fill value must be 1, 2, 4 or 8 bytes",
            axis: 0,
            value: value.len() as u64,
            limit: 8,
        });
    }
    let mut v = [0u8; 8];
    v[..value.len()].copy_from_slice(value);
    let value = u64::from_le_bytes(v);
    let mut packed = Vec::with_capacity(fills.len());
    for (index, f) in fills.iter().enumerate() {
        let rank =
            check_ranks(index, &[f.sample_shape.len(), f.in_sample_lo.len(), f.extent.len()])?;
        if rank == 0 {
            return Err(Error::BadBox { index, what: "rank 0", axis: 0, value: 0, limit: 1 });
        }
        let (dst_base, ds) =
            place_in_output(index, f.sample, f.sample_shape, f.in_sample_lo, f.extent, out_elems)?;
        let (extent, count) = extent_u32(index, f.extent)?;
        packed.push(PackedFill {
            dst_base,
            value,
            rank: rank as u32,
            count,
            extent,
            dst_stride: ds,
        });
    }
    Ok(packed)
}

/// A range of device memory (address and length in bytes) handed to a launch.
///
/// Made safely from a [`gpu_schedule::CudaDeviceMem`] (with the `cuda` feature) and
/// narrowed with [`DeviceRange::slice`]; a raw one needs the `unsafe`
/// [`DeviceRange::from_raw`], so a range always names memory its maker vouched for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRange {
    ptr: u64,
    len: u64,
}

impl DeviceRange {
    /// A range from a raw device address.
    ///
    /// # Safety
    /// `ptr..ptr + len` must be device memory of the context the range is used with, live
    /// until every launch given the range has completed.
    pub unsafe fn from_raw(ptr: u64, len: u64) -> Self {
        Self { ptr, len }
    }

    /// The device address.
    pub fn ptr(self) -> u64 {
        self.ptr
    }

    /// Length in bytes.
    pub fn len(self) -> u64 {
        self.len
    }

    /// Whether the range is empty.
    pub fn is_empty(self) -> bool {
        self.len == 0
    }

    /// The sub-range `offset..offset + len`.
    ///
    /// # Errors
    /// [`Error::BufferTooSmall`] when it does not lie inside this range.
    pub fn slice(self, offset: u64, len: u64) -> Result<Self> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(Self { ptr: self.ptr + offset, len }),
            _ => Err(Error::BufferTooSmall {
                kernel: "DeviceRange::slice",
                what: "sub-range",
                needed: offset.saturating_add(len),
                len: self.len,
            }),
        }
    }
}

/// One batch to decode with nvCOMP's batched zstd (or its host twin): device arrays of
/// `chunks` entries each (`u64` pointers and sizes, `i32` statuses).
#[derive(Debug, Clone, Copy)]
pub struct ZstdBatch {
    /// Number of chunks.
    pub chunks: usize,
    /// Largest output buffer of the batch (at most the decoder's maximum).
    pub max_chunk_bytes: usize,
    /// Device pointers to each compressed frame (aligned to the input alignment).
    pub comp_ptrs: DeviceRange,
    /// Compressed sizes.
    pub comp_bytes: DeviceRange,
    /// Output buffer sizes.
    pub out_capacity: DeviceRange,
    /// Device pointers to each output buffer.
    pub out_ptrs: DeviceRange,
    /// Written: bytes actually decoded per chunk.
    pub out_actual: DeviceRange,
    /// Written: `nvcompStatus_t` per chunk.
    pub statuses: DeviceRange,
}

/// The frames of one device frame check (`Kernels::check_zstd_frames`, or its host twin
/// [`crate::host::check_zstd_frames`]): device arrays of `count` `u64` entries each, the
/// same arrays nvCOMP's batched decode takes ([`ZstdFrames::of_batch`]).
#[derive(Debug, Clone, Copy)]
pub struct ZstdFrames {
    /// Number of frames.
    pub count: u32,
    /// Device pointers to each compressed frame.
    pub comp_ptrs: DeviceRange,
    /// Compressed sizes.
    pub comp_bytes: DeviceRange,
    /// The decoded size each frame must declare (nvCOMP's output capacities, which the
    /// engine sizes to the chunk's decoded size).
    pub expected: DeviceRange,
}

impl ZstdFrames {
    /// The frames of an nvCOMP batch, each expected to decode to its output capacity.
    ///
    /// # Errors
    /// [`Error::Overflow`] for a batch of more than `u32::MAX` chunks.
    pub fn of_batch(batch: &ZstdBatch) -> Result<Self> {
        let count = u32::try_from(batch.chunks)
            .map_err(|_| Error::Overflow { index: 0, what: "zstd frame check count" })?;
        Ok(Self {
            count,
            comp_ptrs: batch.comp_ptrs,
            comp_bytes: batch.comp_bytes,
            expected: batch.out_capacity,
        })
    }
}

/// The verdict of the frame check on one frame (`struct FrameVerdict` in `kernels.cu`):
/// `code` 0 when the frame passed, else a [`FrameFault`] code with the byte offset and
/// value that [`crate::check_zstd_frame`] reports for the same frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct FrameVerdict {
    /// 0, or [`FrameFault::code`].
    pub code: u32,
    /// Keeps `offset` 8-byte aligned.
    pub pad: u32,
    /// Byte offset of the fault in the frame.
    pub offset: u64,
    /// The offending value.
    pub value: u64,
}

impl FrameVerdict {
    /// Bytes of one verdict in device memory.
    pub const BYTES: u64 = 24;

    /// The verdict of a passing frame.
    pub const OK: Self = Self { code: 0, pad: 0, offset: 0, value: 0 };

    /// The verdict that stands for a result of [`crate::check_zstd_frame`]; `None` for an
    /// error that is not a frame fault.
    pub fn of_check(r: &Result<()>) -> Option<Self> {
        match r {
            Ok(()) => Some(Self::OK),
            Err(Error::ZstdFrame { reason, offset, value }) => Some(Self {
                code: FrameFault::from_reason(reason)?.code(),
                pad: 0,
                offset: *offset as u64,
                value: *value,
            }),
            Err(_) => None,
        }
    }

    /// The verdict as [`crate::check_zstd_frame`]'s result for the frame.
    ///
    /// # Errors
    /// [`Error::ZstdFrame`] for a failed frame, exactly as the host check gives it;
    /// [`Error::FrameVerdictCode`] for a code no fault has (a verdict buffer the kernel
    /// did not write); [`Error::Overflow`] for an offset past `usize`.
    pub fn result(&self) -> Result<()> {
        if self.code == 0 {
            return Ok(());
        }
        let fault =
            FrameFault::from_code(self.code).ok_or(Error::FrameVerdictCode { code: self.code })?;
        let offset = usize::try_from(self.offset)
            .map_err(|_| Error::Overflow { index: 0, what: "frame verdict offset" })?;
        Err(fault.error(offset, self.value))
    }

    /// Verdicts from the bytes of a verdict array read back from the device (a trailing
    /// partial verdict is ignored).
    pub fn from_bytes(bytes: &[u8]) -> Vec<Self> {
        bytes.chunks_exact(Self::BYTES as usize).map(bytemuck::pod_read_unaligned).collect()
    }
}

/// The outcome of a decode-status reduction, as read back from its two device words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecodeReport {
    /// The lowest index of a failing chunk, if any failed.
    pub first_failing: Option<u32>,
    /// How many chunks failed.
    pub failures: u32,
}

impl DecodeReport {
    /// Bytes of the device report (two `u32`).
    pub const BYTES: u64 = 8;

    /// Interprets the report's bytes (native-endian `[first, count]`).
    pub fn from_bytes(b: [u8; 8]) -> Self {
        let first = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        let failures = u32::from_ne_bytes([b[4], b[5], b[6], b[7]]);
        Self { first_failing: (first != u32::MAX).then_some(first), failures }
    }
}

/// Fails with `BufferTooSmall` when `range` is shorter than `needed` bytes.
pub(crate) fn need(
    kernel: &'static str,
    what: &'static str,
    range: DeviceRange,
    needed: u64,
) -> Result<()> {
    if range.len() < needed {
        return Err(Error::BufferTooSmall { kernel, what, needed, len: range.len() });
    }
    Ok(())
}

/// Bytes of `count` items of `size` bytes, checked.
pub(crate) fn bytes_for(kernel: &'static str, count: u32, size: usize) -> Result<u64> {
    u64::from(count).checked_mul(size as u64).ok_or(Error::Overflow { index: 0, what: kernel })
}

#[cfg(feature = "cuda")]
impl From<&gpu_schedule::CudaDeviceMem> for DeviceRange {
    fn from(m: &gpu_schedule::CudaDeviceMem) -> Self {
        Self { ptr: m.device_ptr(), len: m.len() as u64 }
    }
}
