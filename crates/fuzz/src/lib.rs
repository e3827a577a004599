//! Fuzzing of damacy's parsers on stable Rust, run by `cargo xtask fuzz` (and in CI by
//! `cargo xtask test`).
//!
//! cargo-fuzz needs nightly, which these machines cannot install (its targets, which this
//! crate replaced, were removed); this crate needs nothing but the workspace. It has no coverage feedback: it
//! mutates a committed seed corpus of valid inputs written by other implementations, with
//! mutations aimed at what breaks these parsers (forged lengths and offsets, structural
//! JSON edits), and checks every input for panics, for the targets' own properties and
//! for allocations above a cap.
//!
//! Map of the crate:
//! - [`targets`]: one module per parser, each with `run_one(data)` asserting its
//!   properties; [`targets::ALL`] lists them.
//! - [`mutate`]: the [`mutate::Mutator`] (byte, integer-field and JSON edits).
//! - [`campaign`]: the corpus and the deterministic sequence of inputs of one run.
//! - [`exec`]: one input under `catch_unwind` and the allocation cap.
//! - [`allocation`]: the counting global allocator and [`allocation::CAP`].
//! - [`rng`]: splitmix64, the only source of randomness.
//! - [`seeds`]: the generator of the committed corpus.
//!
//! The binary (`src/main.rs`) runs each target in a worker process, so that even an
//! abort (an allocation the system refuses, a stack overflow) is reported with the input
//! that caused it.

pub mod allocation;
pub mod campaign;
pub mod exec;
pub mod mutate;
pub mod rng;
pub mod seeds;
pub mod targets;

// The unit tests run under the counting allocator too, so that the cap can be tested.
#[cfg(test)]
#[global_allocator]
static ALLOC: allocation::CountingAlloc = allocation::CountingAlloc;
