//! The crate's error type: launch and driver failures name the kernel and the CUDA call;
//! descriptor checks name the placement and the numbers that do not fit.

use std::path::PathBuf;

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `kernels`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A box has more axes than the kernels support.
    #[error("placement {index}: rank {rank} exceeds the kernels' maximum of {max} axes")]
    RankTooLarge {
        /// Index of the placement or fill box.
        index: usize,
        /// Its rank.
        rank: usize,
        /// [`crate::MAX_RANK`].
        max: usize,
    },
    /// A placement's shapes and boxes do not agree (ranks differ, a box leaves its shape,
    /// or the extents of the chunk box and the sample box differ).
    #[error("placement {index}: {what} (axis {axis}: {value} vs limit {limit})")]
    BadBox {
        /// Index of the placement or fill box.
        index: usize,
        /// What is wrong.
        what: &'static str,
        /// The axis concerned.
        axis: usize,
        /// The offending value.
        value: u64,
        /// The limit it broke.
        limit: u64,
    },
    /// Sizes or offsets overflowed, or exceed what the kernels index (a box of more than
    /// `u32::MAX` elements, an axis longer than `u32::MAX`).
    #[error("placement {index}: {what} overflows")]
    Overflow {
        /// Index of the placement, fill box or range.
        index: usize,
        /// The quantity.
        what: &'static str,
    },
    /// A placement writes past the end of the output.
    #[error("placement {index}: writes up to element {end} of an output of {len} elements")]
    OutOfOutput {
        /// Index of the placement or fill box.
        index: usize,
        /// One past the last element written.
        end: u64,
        /// Output length in elements.
        len: u64,
    },
    /// A source or destination address is not aligned for the element size.
    #[error("placement {index}: address {addr:#x} is not aligned to {align} bytes")]
    Misaligned {
        /// Index of the placement.
        index: usize,
        /// The address.
        addr: u64,
        /// The required alignment.
        align: u64,
    },
    /// A blosc shuffle description is invalid (typesize or blocksize 0).
    #[error("placement {index}: blosc shuffle with typesize {typesize} and blocksize {blocksize}")]
    BadShuffle {
        /// Index of the placement.
        index: usize,
        /// The typesize.
        typesize: u32,
        /// The block size in bytes.
        blocksize: u64,
    },
    /// A device buffer is smaller than a launch needs.
    #[error("{kernel}: {what} needs {needed} bytes but the buffer has {len}")]
    BufferTooSmall {
        /// The kernel or call.
        kernel: &'static str,
        /// Which buffer.
        what: &'static str,
        /// Bytes needed.
        needed: u64,
        /// Bytes present.
        len: u64,
    },
    /// The crate was built without the `cuda` feature.
    #[error("the kernels crate was built without the `cuda` feature")]
    CudaFeatureDisabled,
    /// Opening the device or its stream failed in `gpu-schedule`.
    #[error(transparent)]
    Schedule(#[from] gpu_schedule::Error),
    /// A CUDA driver call failed.
    #[error("{kernel}: CUDA call {call} failed: {code}")]
    Driver {
        /// The kernel (or operation) being prepared or launched.
        kernel: &'static str,
        /// The driver entry point.
        call: &'static str,
        /// The driver's error code, as its name.
        code: String,
    },
    /// A call into the CUDA or NVRTC binding panicked (a symbol missing from an old
    /// driver, or no libnvrtc).
    #[error(
        "{kernel}: {call} panicked inside the CUDA binding (is libnvrtc/the driver missing or too old?)"
    )]
    Panicked {
        /// The kernel or operation.
        kernel: &'static str,
        /// The call.
        call: &'static str,
    },
    /// NVRTC rejected the kernel source.
    #[error("NVRTC failed to compile the kernels for {arch}: {log}")]
    Compile {
        /// The `--gpu-architecture` value.
        arch: String,
        /// NVRTC's log (or error).
        log: String,
    },
    /// No nvCOMP library was found.
    #[error(
        "libnvcomp.so was not found (searched {searched:?}); set DAMACY_NVCOMP_LIB to the library or an unpacked nvidia-libnvcomp wheel"
    )]
    NvcompMissing {
        /// Every path or name tried, in order.
        searched: Vec<PathBuf>,
    },
    /// The nvCOMP library lacks a symbol this binding needs (wrong major version).
    #[error("{library:?} has no symbol {symbol} (nvCOMP 5 or 6 is required)")]
    NvcompSymbol {
        /// The library.
        library: PathBuf,
        /// The symbol.
        symbol: &'static str,
    },
    /// An nvCOMP call returned a status other than success.
    #[error("nvCOMP {call} returned status {status} ({})", crate::search::nvcomp_status_name(*status))]
    Nvcomp {
        /// The entry point.
        call: &'static str,
        /// The `nvcompStatus_t` value.
        status: i32,
    },
    /// No cuFile (GPUDirect Storage) library was found.
    #[error(
        "libcufile.so was not found (searched {searched:?}); set DAMACY_CUFILE_LIB to the library or an unpacked nvidia-cufile wheel"
    )]
    CufileMissing {
        /// Every path or name tried, in order.
        searched: Vec<PathBuf>,
    },
    /// The cuFile library lacks a symbol this binding needs.
    #[error(
        "{library:?} has no symbol {symbol} (a cuFile with stream APIs, CUDA 12.2 or later, is required)"
    )]
    CufileSymbol {
        /// The library.
        library: PathBuf,
        /// The symbol.
        symbol: &'static str,
    },
    /// A cuFile call returned an error status (`CUfileError_t`).
    #[error(
        "cuFile {call} failed: {} ({err}){}",
        crate::cufile::op_error_name(*err),
        if *err == crate::cufile::CUDA_DRIVER_ERROR { format!(", CUDA driver error {cu_err}") } else { String::new() }
    )]
    Cufile {
        /// The entry point.
        call: &'static str,
        /// The `CUfileOpError` value.
        err: i32,
        /// The `CUresult`, when `err` is `CU_FILE_CUDA_DRIVER_ERROR`.
        cu_err: i32,
    },
    /// A cuFile read reported a failure in its byte count (a negative `errno` or a negated
    /// `CUfileOpError`).
    #[error("cuFile {call}: the read failed with {} ({code})", crate::cufile::io_error_name(*code))]
    CufileIo {
        /// The entry point.
        call: &'static str,
        /// The failure's code (positive: an `errno` below 5000, else a `CUfileOpError`).
        code: i64,
    },
    /// A cuFile read returned fewer bytes than asked for (the file ends early).
    #[error(
        "cuFile read at file offset {file_offset}: {read} of {requested} bytes (the file is shorter)"
    )]
    CufileShortRead {
        /// The file offset.
        file_offset: u64,
        /// Bytes asked for.
        requested: u64,
        /// Bytes read.
        read: u64,
    },
    /// A zstd frame failed the host-side check that guards nvCOMP.
    #[error("zstd frame: {reason} at byte {offset} (value {value})")]
    ZstdFrame {
        /// What is wrong.
        reason: &'static str,
        /// Byte offset in the frame.
        offset: usize,
        /// The offending value.
        value: u64,
    },
    /// A frame verdict read back from the device carries a code that no
    /// [`crate::zstd_frame::FrameFault`] has (the verdict array was not written by the
    /// frame check, or was overwritten).
    #[error(
        "zstd frame check: verdict code {code} is no known fault (was the verdict array written by the check?)"
    )]
    FrameVerdictCode {
        /// The code read.
        code: u32,
    },
    /// A decode batch is larger than the decoder was sized for.
    #[error(
        "nvCOMP batch of {chunks} chunks (largest {max_chunk_bytes} bytes) exceeds the decoder's {limit_chunks} chunks of {limit_chunk_bytes} bytes"
    )]
    BatchTooLarge {
        /// Chunks in the batch.
        chunks: usize,
        /// Largest decoded chunk of the batch.
        max_chunk_bytes: usize,
        /// The decoder's chunk limit.
        limit_chunks: usize,
        /// The decoder's per-chunk limit.
        limit_chunk_bytes: usize,
    },
}
