//! The cuFile (GPUDirect Storage) binding: reads from files straight into device memory
//! through a `dlopen`ed `libcufile.so`, so compressed bytes need no bounce through pinned
//! host memory (signatures from NVIDIA's `cufile.h`).
//!
//! Three levels, as the house style asks (and as the `nvcomp` module does): [`raw`] holds
//! the C types and function pointer types; [`CufileLib`] loads the library (searching as
//! [`crate::search::CUFILE`] says: `DAMACY_CUFILE_LIB`, the loader, the `nvidia-cufile`
//! wheel) and wraps each call into a `Result`, counting every registration and
//! deregistration it makes; owning types — [`Driver`], [`FileHandle`] and, with the
//! `cuda` feature, `RegisteredBuffer` and `RegisteredStream` — register once and
//! deregister in `Drop`, each holding what it was registered with, so teardown runs in
//! the reverse order. Two traps of this path (the C predecessor's #116–#119) shape it:
//! - a read's completion is a [`ReadCompletion`] over an event recorded on the read's
//!   stream after the read ([`completion`]), never a "submitted" flag;
//! - in compat mode libcufile sets up per-stream state lazily on a stream's first async
//!   read and races with itself, so a stream is registered (`cuFileStreamRegister`) when
//!   it is adopted (`RegisteredStream::adopt`) and deregistered before it is destroyed.
//!
//! Loading and the completion logic are compiled without the `cuda` feature too, so a
//! machine without CUDA tests them (the library's absence is a typed
//! [`Error::CufileMissing`]).

pub mod completion;
#[cfg(feature = "cuda")]
mod device;
mod driver;
mod library;
pub mod raw;

pub use completion::{ReadCompletion, ReadParams, Retirement};
#[cfg(feature = "cuda")]
pub use device::{RegisteredBuffer, RegisteredStream, StreamEvent};
pub use driver::{Driver, FileHandle};
pub use library::{
    CUDA_DRIVER_ERROR, CufileLib, DRIVER_NOT_INITIALIZED, DriverProperties, FileSystem,
    OP_BASE_ERR, RegistrationCounts, io_error_name, op_error_name,
};
