//! The planner's integration tests: properties over random batches, corner cases and
//! one test per error.

mod common;
mod corners;
mod errors;
mod props;
