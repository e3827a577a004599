//! Metadata prefetching: [`SlotCache`] with stable handles, [`Gate`]s, fetchers and the
//! prefetcher (DESIGN.md §2 "prefetch-cache").
//!
//! [`Turnstile`] hands work prepared out of order on in push order.
//!
//! The core ([`slot_cache`], [`gate`], [`turnstile`]) is generic and does no I/O; its concurrency is
//! checked with loom (`RUSTFLAGS="--cfg damacy_loom" cargo test --release --lib -p
//! prefetch-cache loom`).

mod error;
pub mod fetch;
pub mod gate;
pub mod image;
mod prefetcher;
pub mod slot_cache;
mod sync;
pub mod turnstile;

pub use error::Error;
pub use fetch::{ArrayInfo, ShardState};
pub use image::{ImageError, ImageGroup, ImageInfo};
pub use prefetcher::{
    CapacityFloors, PrefetchConfig, PrefetchStats, Prefetcher, ReadySample, ResolvedSample,
    ResolvedShard, SampleRequest,
};

pub use gate::{Gate, GatePool, GateStatus, Ticket};
pub use slot_cache::{
    Again, CacheStats, Completion, Evict, Guard, Handle, Requested, SlotCache, State, WaitOn,
};
pub use turnstile::Turnstile;

#[cfg(all(test, damacy_loom))]
mod tests;
