//! Choosing the engine for a configuration: the one place outside the CUDA engine's own
//! module that names the `cuda` feature.

use std::sync::Arc;

use crate::config::{Backend, Config};
use crate::engine::host::HostEngine;
use crate::engine::{Engine, EngineCtx};
use crate::error::Result;

/// Chooses and builds the engine for `cfg.backend`.
///
/// # Errors
/// `BackendUnavailable` for `Backend::Cuda` in a build without the `cuda` feature or on
/// a machine where the device cannot be used; the CUDA engine's `Budget` and `Gpu`
/// errors; `Config` errors of the host engine.
pub(crate) fn open(cfg: &Config, ctx: EngineCtx) -> Result<Box<dyn Engine>> {
    match cfg.backend {
        Backend::Host => Ok(Box::new(HostEngine::new(cfg, ctx)?)),
        Backend::Cuda { device } => open_cuda(cfg, device, ctx),
        // Any CUDA engine failure falls back to the host engine here; `Auto` is meant to
        // run wherever it is started.
        Backend::Auto => {
            let host_ctx = EngineCtx {
                output: Arc::clone(&ctx.output),
                stats: Arc::clone(&ctx.stats),
                jobs: ctx.jobs.clone(),
                fatal: Arc::clone(&ctx.fatal),
                faults: Arc::clone(&ctx.faults),
            };
            match open_cuda(cfg, 0, ctx) {
                Ok(e) => Ok(e),
                Err(_) => Ok(Box::new(HostEngine::new(cfg, host_ctx)?)),
            }
        }
    }
}

#[cfg(feature = "cuda")]
fn open_cuda(cfg: &Config, device: usize, ctx: EngineCtx) -> Result<Box<dyn Engine>> {
    Ok(Box::new(crate::engine::cuda::seam::CudaEngine::start(cfg, device, ctx)?))
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(_cfg: &Config, _device: usize, _ctx: EngineCtx) -> Result<Box<dyn Engine>> {
    Err(crate::error::Error::BackendUnavailable {
        reason: "this build of damacy has no CUDA engine (build with the `cuda` feature)",
    })
}
