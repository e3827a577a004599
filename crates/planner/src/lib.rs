//! The pure batch planner: chunk plans, fills, coalesced reads and waves
//! (DESIGN.md §2 "planner").
//!
//! [`plan`] takes a batch's arrays ([`ArrayEntry`]), samples ([`SampleInput`], each a box
//! and one [`ShardState`] per touched shard) and [`PlanLimits`], and returns a
//! [`BatchPlan`]:
//! - every distinct chunk once ([`ChunkPlan`]), however many samples need it, with one
//!   [`Placement`] per sample: a copy from a read op, a hit in the engine's decoded-chunk
//!   cache ([`plan_with_probe`]), or a fill;
//! - per-file reads coalesced under the caps and interleaved round-robin across files
//!   ([`ReadOp`]), each carrying its group of chunks;
//! - waves ([`Wave`]) packed by staging bytes, chunk count and decompressed bytes, never
//!   splitting a read's group;
//! - [`PlanStats`] with read and decode amplification.
//!
//! The crate does no I/O, starts no threads and contains no `unsafe`; the same input gives
//! the same plan.
#![forbid(unsafe_code)]

mod batch;
mod cast;
mod error;
mod input;
mod plan;

pub use batch::{plan, plan_with_probe};
pub use cast::{Cast, OutDtype};
pub use error::{Error, Result};
pub use input::{ArrayEntry, ArrayId, PlanLimits, SampleInput, ShardState};
pub use plan::{
    BatchPlan, ChunkPlan, ChunkProbe, ChunkSource, FileRef, NoProbe, Placement, PlanStats, ReadOp,
    StoredChunk, Wave,
};
