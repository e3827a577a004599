//! Integration tests of the bench tooling: a throughput run on the host engine and, with
//! the `cuda` feature on a GPU host, the CUDA engine on a generated scenario.

#[cfg(feature = "cuda")]
mod gpu;
mod run;
