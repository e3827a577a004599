mod host;
#[cfg(feature = "cuda")]
mod gpu;
