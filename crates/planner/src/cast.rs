//! The output element type and cast rule, defined once in `zarr` (re-exported here for
//! the planner's callers).

pub use zarr::{Cast, OutDtype};
