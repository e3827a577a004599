//! GPU payloads: CUDA C kernels compiled with NVRTC at run time, and the nvCOMP binding.
//!
//! The kernels (`src/cuda/kernels.cu`, embedded with `include_str!`) are:
//! - **assemble**: gather each decoded chunk's intersection box into the batch tensor and
//!   cast it to `f32`, `bf16`, `f16` or copy it natively, bit for bit like the host
//!   engine (`damacy::cast`); blosc byte and bit unshuffle are folded into the gather
//!   (a shuffled chunk is read through an address map, so no unshuffled copy is made);
//! - **fill**: write one element value over many boxes;
//! - **unshuffle**: the same address map as a standalone pass over a whole chunk;
//! - **memcpy**: many raw byte ranges in one launch;
//! - **status reduction**: first failing chunk and failure count of a decode batch;
//! - **zstd frame check**: the device twin of [`check_zstd_frame`], one verdict per frame
//!   of an nvCOMP batch, for frames the host never saw (GPUDirect Storage reads).
//!
//! Host-side descriptor packing ([`desc`]), the library searches ([`search`]) and the
//! cuFile binding's loading and completion logic ([`cufile`]) are always compiled and
//! tested. Everything that touches CUDA lives behind the `cuda`
//! feature: [`Kernels`] (the per-device compiled module and its typed launch wrappers),
//! [`mem`] (small synchronous upload/download helpers) and [`nvcomp`] (batched zstd
//! decode through a `dlopen`ed `libnvcomp.so`) and [`cufile`]'s owning types (GPUDirect
//! Storage reads into registered device buffers, ordered on CUDA streams). Without the feature the crate is this
//! host surface only, so the workspace builds on machines without CUDA.

pub mod cast;
pub mod cufile;
pub mod desc;
pub mod error;
pub mod host;
pub mod search;
mod sync;
pub mod zstd_frame;

#[cfg(feature = "cuda")]
pub mod mem;
#[cfg(feature = "cuda")]
mod module;
#[cfg(feature = "cuda")]
pub mod nvcomp;

#[cfg(test)]
mod tests;

pub use desc::{
    CopyRange, DecodeReport, DeviceRange, FillBox, FillSpec, FrameVerdict, MAX_RANK, PackedFill,
    PackedPlacement, Placement, Shuffle, ShuffleSpec, ZstdBatch, ZstdFrames, pack_fills,
    pack_placements, src_code,
};
pub use error::{Error, Result};
#[cfg(feature = "cuda")]
pub use module::Kernels;
pub use zstd_frame::{FrameFault, check_zstd_frame};

/// The CUDA C source of every kernel, compiled by NVRTC at run time.
pub const KERNELS_CU: &str = include_str!("cuda/kernels.cu");

/// Entry points that [`KERNELS_CU`] must define (checked by a host test, and looked up
/// once per device when the module is loaded).
pub const ENTRY_POINTS: [&str; 9] = [
    "damacy_assemble_f32",
    "damacy_assemble_bf16",
    "damacy_assemble_f16",
    "damacy_assemble_native",
    "damacy_fill",
    "damacy_unshuffle",
    "damacy_memcpy",
    "damacy_status_reduce",
    "damacy_zstd_frame_check",
];
