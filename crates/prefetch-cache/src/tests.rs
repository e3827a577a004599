//! Loom models of the cache and gate core (compiled only under `cfg(damacy_loom)`).

mod loom_cache;
mod loom_turnstile;
