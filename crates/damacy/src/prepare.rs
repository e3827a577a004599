//! Preparing one batch for an engine: the samples' infos and shapes checked, their
//! resolved metadata gathered into the planner's arrays (one output element type per
//! batch), and the batch planned. Engine-independent: the engine only supplies its plan
//! limits.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use planner::{ArrayEntry, ArrayId, PlanLimits, SampleInput};
use prefetch_cache::ReadySample;
use zarr::DataType;

use crate::batch::SampleInfo;
use crate::config::{Config, OnError};
use crate::decoded_cache::{CachePin, CacheProbe, CacheUse, Claims, DecodedCache};
use crate::engine::{ArrayFacts, BatchMeta, Ordered, Planned};
use crate::error::{Error, SampleError};
use crate::resolve::resolved;
use crate::stats::StatCounters;

/// Prepares batch `id` from its resolved samples (in push order).
pub(crate) fn prepare(
    cfg: &Config,
    limits: &PlanLimits,
    stats: &StatCounters,
    cache: Option<(&DecodedCache, CacheUse)>,
    id: u64,
    samples: Vec<ReadySample>,
) -> Ordered {
    let t0 = Instant::now();
    let infos = match sample_infos(cfg, &samples) {
        Ok(infos) => infos,
        Err(e) => return Ordered::Failed(e),
    };
    let mut inputs = match gather_arrays(cfg, &infos, samples) {
        Ok(inputs) => inputs,
        Err(e) => return Ordered::Failed(e),
    };
    // Each object-store request costs tens of milliseconds: ranges closer than the
    // object-store gap are cheaper read through than requested apart.
    let remote = infos.iter().any(|i| i.uri.to_str().is_some_and(store::is_remote_uri));
    let gap = if remote {
        limits.merge_gap_bytes.max(cfg.object_store.merge_gap_bytes)
    } else {
        limits.merge_gap_bytes
    };
    let limits = &PlanLimits { merge_gap_bytes: gap, ..*limits };
    let (plan, hits, claims) = match plan(cfg, limits, cache, &infos, &mut inputs) {
        Ok(p) => p,
        Err(e) => return Ordered::Failed(e),
    };
    stats.plan_ns.fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
    let sample_bytes = cfg.sample_elements().unwrap_or(0) as usize * cfg.dtype.size(inputs.element);
    Ordered::Planned(Box::new(Planned {
        meta: BatchMeta {
            id,
            infos,
            element: inputs.element,
            sample_bytes,
            fills: inputs.fills,
            early: inputs.early,
            plan_stats: plan.stats,
            reads: plan.reads.len() as u64,
        },
        arrays: inputs.arrays,
        facts: inputs.facts,
        plan,
        positions: inputs.positions,
        hits,
        claims,
    }))
}

/// The samples' infos, each box checked against the configured sample shape. A shape
/// error is the caller's mistake, not the data's: the batch fails whatever the error
/// policy.
fn sample_infos(cfg: &Config, samples: &[ReadySample]) -> Result<Vec<SampleInfo>, Error> {
    samples
        .iter()
        .map(|r| {
            let req = &r.request;
            let uri = PathBuf::from(&*req.uri);
            // Boxes were validated by `Sample::new` before they were pushed, so this
            // fails only for a sample that bypassed it.
            let aabb =
                zarr::Aabb::new(req.lo.clone(), req.hi.clone()).map_err(|e| Error::Sample {
                    index: r.seq,
                    uri: uri.clone(),
                    source: Box::new(SampleError::Format(e)),
                })?;
            if aabb.shape() != cfg.sample_shape {
                return Err(Error::SampleShape {
                    index: r.seq,
                    uri,
                    expected: cfg.sample_shape.clone().into(),
                    got: aabb.shape().into_vec().into(),
                });
            }
            Ok(SampleInfo { index: r.seq, uri, aabb, level: req.level })
        })
        .collect()
}

/// The planner's view of a batch, and what delivery needs of it.
struct Inputs {
    arrays: Vec<ArrayEntry>,
    facts: Vec<ArrayFacts>,
    samples: Vec<SampleInput>,
    /// Batch position of each planned sample.
    positions: Vec<usize>,
    /// Samples whose metadata could not be resolved.
    early: Vec<(usize, SampleError)>,
    element: DataType,
    fills: Vec<Vec<u8>>,
}

/// Resolves each sample's metadata into the batch's distinct arrays. Samples that failed
/// to resolve are set aside (`early`), the rest become planner inputs.
///
/// # Errors
/// `NativeDtypeMismatch` when `OutDtype::Native` meets a second element type.
fn gather_arrays(
    cfg: &Config,
    infos: &[SampleInfo],
    samples: Vec<ReadySample>,
) -> Result<Inputs, Error> {
    let mut inputs = Inputs {
        arrays: Vec::new(),
        facts: Vec::new(),
        samples: Vec::new(),
        positions: Vec::new(),
        early: Vec::new(),
        element: DataType::Float32,
        fills: vec![Vec::new(); infos.len()],
    };
    let mut element: Option<DataType> = None;
    for (pos, ready) in samples.into_iter().enumerate() {
        let r = match resolved(ready.outcome) {
            Ok(r) => r,
            Err(e) => {
                inputs.early.push((pos, e));
                continue;
            }
        };
        let out_el = cfg.dtype.element(r.entry.meta.data_type);
        match element {
            Some(e) if e != out_el => {
                let info = &infos[pos];
                return Err(Error::NativeDtypeMismatch {
                    index: info.index,
                    uri: info.uri.clone(),
                    expected: e,
                    got: out_el,
                });
            }
            _ => element = Some(out_el),
        }
        let a = inputs.array_of(cfg, &r.entry);
        inputs.fills[pos] = inputs.facts[a].fill_out.clone();
        inputs.samples.push(SampleInput {
            array: ArrayId(a as u32),
            aabb: infos[pos].aabb.clone(),
            shards: r.shards,
        });
        inputs.positions.push(pos);
    }
    inputs.element = element.unwrap_or(DataType::Float32);
    let out_size = cfg.dtype.size(inputs.element);
    for f in &mut inputs.fills {
        if f.is_empty() {
            // A sample whose metadata could not be read has no known fill value: zeros.
            *f = vec![0; out_size];
        }
    }
    Ok(inputs)
}

impl Inputs {
    /// The index of `entry`'s array among the batch's arrays, adding it on first sight.
    fn array_of(&mut self, cfg: &Config, entry: &ArrayEntry) -> usize {
        if let Some(a) = self.arrays.iter().position(|e| Arc::ptr_eq(&e.meta, &entry.meta)) {
            return a;
        }
        self.arrays.push(entry.clone());
        self.facts.push(ArrayFacts::new(entry, cfg.dtype));
        self.arrays.len() - 1
    }
}

/// Plans the batch, with the decoded-chunk cache's hits pinned (when there is a cache).
/// A planning error caused by one sample's data (a corrupt index, a
/// zero-length or implausibly large stored chunk, a box outside its array) names that
/// sample; under `OnError::Fill` the sample is set aside (filled and listed at delivery)
/// and the rest of the batch is planned again, so one bad sample never costs the batch.
///
/// # Errors
/// `Error::Sample` naming the sample at fault (or, for limits and other batch-wide
/// errors, the batch's first sample).
fn plan(
    cfg: &Config,
    limits: &PlanLimits,
    cache: Option<(&DecodedCache, CacheUse)>,
    infos: &[SampleInfo],
    inputs: &mut Inputs,
) -> Result<(planner::BatchPlan, Vec<CachePin>, Claims), Error> {
    loop {
        // A fresh probe per attempt: the pins and claims of a failed attempt go back with
        // it (an abandoned claim wakes whoever joined it).
        let planned = match cache {
            None => planner::plan(&inputs.arrays, &inputs.samples, limits, cfg.dtype)
                .map(|p| (p, Vec::new(), HashMap::new())),
            Some((cache, mode)) => {
                let mut probe = CacheProbe::new(cache, mode);
                let (arrays, samples) = (&inputs.arrays, &inputs.samples);
                let planned =
                    planner::plan_with_probe(arrays, samples, limits, cfg.dtype, &mut probe);
                // The lock goes before the pins and claims are handed on (or dropped).
                let CacheProbe { probe: held, pins, claims, .. } = probe;
                drop(held);
                planned.map(|p| (p, pins, claims))
            }
        };
        let e = match planned {
            Ok(p) => return Ok(p),
            Err(e) => e,
        };
        let at_fault = e.data_sample().filter(|&s| s < inputs.samples.len());
        let pos = at_fault.map_or(0, |s| inputs.positions[s]);
        let source = SampleError::Plan(Box::new(e));
        match at_fault {
            // Each pass removes one sample, so this ends.
            Some(s) if cfg.on_error == OnError::Fill => {
                inputs.samples.remove(s);
                inputs.positions.remove(s);
                inputs.early.push((pos, source));
            }
            _ => {
                let Some(info) = infos.get(pos) else { return Err(Error::Closed) };
                return Err(Error::Sample {
                    index: info.index,
                    uri: info.uri.clone(),
                    source: Box::new(source),
                });
            }
        }
    }
}
