//! Choosing the engine for a configuration: the one place outside the CUDA engine's own
//! module that names the `cuda` feature.

use crate::config::{Backend, Config, Gds};
use crate::engine::host::HostEngine;
use crate::engine::{Engine, EngineCtx, Running};
use crate::error::{Error, GdsUnavailable, Result};

/// Chooses and builds the engine for `cfg.backend`, and says which one runs and why.
///
/// # Errors
/// `BackendUnavailable` for `Backend::Cuda` in a build without the `cuda` feature or on
/// a machine where the device cannot be used; for `Backend::Auto` only when the CUDA
/// engine fails for another reason than a missing driver or device (kernels that do not
/// compile, for example); the CUDA engine's `Budget` and `Gpu` errors, for `Auto` too;
/// `Config` errors of the host engine; `GdsUnavailable` when `gds` is `on` and the host
/// engine runs, or cuFile cannot be used.
pub(crate) fn open(cfg: &Config, ctx: EngineCtx) -> Result<(Box<dyn Engine>, Running)> {
    let (engine, running) = open_any(cfg, ctx)?;
    if cfg.gds == Gds::On && matches!(running, Running::Host | Running::HostFallback { .. }) {
        return Err(Error::GdsUnavailable { reason: GdsUnavailable::HostEngine });
    }
    Ok((engine, running))
}

fn open_any(cfg: &Config, ctx: EngineCtx) -> Result<(Box<dyn Engine>, Running)> {
    match cfg.backend {
        Backend::Host => Ok((Box::new(HostEngine::new(cfg, ctx)?), Running::Host)),
        Backend::Cuda { device } => {
            let e = open_cuda(cfg, device, ctx)?;
            let running = e.running();
            Ok((e, running))
        }
        Backend::Simulated => {
            let e = crate::engine::cuda::seam::start_simulated(cfg, ctx)?;
            Ok((e, Running::Simulated))
        }
        Backend::Auto => {
            let host_ctx = ctx.clone();
            match open_cuda(cfg, 0, ctx) {
                Ok(e) => {
                    let running = e.running();
                    Ok((e, running))
                }
                Err(Error::BackendUnavailable { reason }) if reason.allows_fallback() => {
                    let host = HostEngine::new(cfg, host_ctx)?;
                    Ok((Box::new(host), Running::HostFallback { reason }))
                }
                Err(e) => Err(e),
            }
        }
    }
}

#[cfg(feature = "cuda")]
fn open_cuda(cfg: &Config, device: usize, ctx: EngineCtx) -> Result<Box<dyn Engine>> {
    crate::engine::cuda::seam::start_cuda(cfg, device, ctx)
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(_cfg: &Config, _device: usize, _ctx: EngineCtx) -> Result<Box<dyn Engine>> {
    Err(Error::BackendUnavailable { reason: crate::error::Unavailable::NotBuilt })
}
