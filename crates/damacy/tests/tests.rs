//! End-to-end tests of the host engine: conformance against zarr-python fixtures, batch
//! semantics, back-pressure, teardown and the error policy.

mod support;

mod behaviour;
mod device;
mod fixtures_e2e;
mod images;
// Needs zarr v2 arrays (issue 17's other half): passes once that work is merged.
mod chunk_cache;
#[cfg(feature = "cuda")]
mod gpu;
mod images_v04;
mod object_stores;
mod read_ahead;
