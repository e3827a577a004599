//! End-to-end tests of the host engine: conformance against zarr-python fixtures, batch
//! semantics, back-pressure, teardown and the error policy.

mod support;

mod behaviour;
mod device;
mod fixtures_e2e;
#[cfg(feature = "cuda")]
mod gpu;
mod object_stores;
mod read_ahead;
