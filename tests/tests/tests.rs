//! The `tests` crate's one integration test binary.

mod conformance;
