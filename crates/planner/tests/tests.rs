//! The planner's integration tests: properties over random batches, corner cases, one
//! test per error, and plans pinned to the previous algorithm's output.

mod common;
mod corners;
mod errors;
mod golden;
mod props;
