//! The planner's integration tests: properties over random batches, corner cases, one
//! test per error, and plans pinned to the previous algorithm's output.

mod common;
mod corners;
/// The bench's `default` batch, shared so that the golden test pins exactly what is benched.
#[path = "../benches/default_batch.rs"]
mod default_batch;
mod errors;
mod golden;
mod props;
