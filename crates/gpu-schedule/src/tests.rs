//! Crate-level tests: the toy pipeline, the mutation check, edge-table checks, and loom models.
