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

/// Prepares the batches `id`, `id + 1`, ... from their resolved samples (in push order,
/// `per_batch` a batch, the last batch possibly short), planned as one where they can
/// be: each batch whose samples fail as a whole (a wrong shape, data types that
/// `OutDtype::Native` cannot put in one tensor) is its own `Ordered::Failed`, and with
/// `Native` a batch of another data type than the one before starts a new plan; a
/// planning error of one sample fails only its own batch (`OnError::Fail`). So every
/// batch gets exactly the outcome it would get planned alone. A plan takes at most
/// `Config::plan_batches_of(engine, element)` batches (`engine`: the engine's
/// `batches_per_plan`), so that it fits the engine's buffer; more start the next plan.
/// Returns one entry per plan or failed batch, in push order.
#[allow(clippy::too_many_arguments)]
pub(crate) fn prepare(
    cfg: &Config,
    limits: &PlanLimits,
    stats: &StatCounters,
    cache: Option<(&DecodedCache, CacheUse)>,
    id: u64,
    samples: Vec<ReadySample>,
    per_batch: usize,
    engine: usize,
) -> Vec<Ordered> {
    let t0 = Instant::now();
    let per_batch = per_batch.max(1);
    let mut out = Vec::new();
    // Consecutive batches planned together: their first id, infos, samples, element.
    let mut run: Run = Run::default();
    let mut samples = samples.into_iter();
    for j in 0u64.. {
        let batch: Vec<ReadySample> = samples.by_ref().take(per_batch).collect();
        if batch.is_empty() {
            break;
        }
        let checked = sample_infos(cfg, &batch)
            .and_then(|infos| batch_element(cfg, &infos, &batch).map(|element| (infos, element)));
        match checked {
            Err(e) => {
                run.flush(cfg, limits, stats, cache, per_batch, &mut out);
                out.push(Ordered::Failed(e));
            }
            Ok((infos, element)) => {
                if run.ends_before(element, cfg.plan_batches_of(engine, run.element.or(element))) {
                    run.flush(cfg, limits, stats, cache, per_batch, &mut out);
                }
                if run.batches == 0 {
                    run.id = id + j;
                }
                run.element = run.element.or(element);
                run.batches += 1;
                run.infos.extend(infos);
                run.samples.extend(batch);
            }
        }
    }
    run.flush(cfg, limits, stats, cache, per_batch, &mut out);
    stats.plan_ns.fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
    out
}

/// Batches gathered for one plan.
#[derive(Default)]
struct Run {
    id: u64,
    batches: usize,
    infos: Vec<SampleInfo>,
    samples: Vec<ReadySample>,
    /// The output element under `OutDtype::Native` (`None` otherwise, or before a
    /// resolved sample).
    element: Option<DataType>,
}

impl Run {
    /// Whether a batch of output `element` must start a new plan rather than join this
    /// one: its element differs from the run's (`Native`), or the run already holds
    /// `most` batches (what the buffer holds of the run's element).
    fn ends_before(&self, element: Option<DataType>, most: usize) -> bool {
        let other = element.is_some() && self.element.is_some() && element != self.element;
        self.batches > 0 && (other || self.batches >= most)
    }

    /// Plans the gathered batches (if any) and starts over.
    fn flush(
        &mut self,
        cfg: &Config,
        limits: &PlanLimits,
        stats: &StatCounters,
        cache: Option<(&DecodedCache, CacheUse)>,
        per_batch: usize,
        out: &mut Vec<Ordered>,
    ) {
        if self.batches == 0 {
            return;
        }
        let run = std::mem::take(self);
        prepare_run(cfg, limits, stats, cache, run, per_batch, out);
    }
}

/// The output element type of one batch under `OutDtype::Native` (its first resolved
/// sample's data type; `None` for other dtypes, or when no sample resolved).
///
/// # Errors
/// `NativeDtypeMismatch` naming the first sample of another data type.
fn batch_element(
    cfg: &Config,
    infos: &[SampleInfo],
    batch: &[ReadySample],
) -> Result<Option<DataType>, Error> {
    if cfg.dtype != crate::config::OutDtype::Native {
        return Ok(None);
    }
    let mut element = None;
    for (r, info) in batch.iter().zip(infos) {
        let Ok(resolved) = &r.outcome else { continue };
        let got = cfg.dtype.element(resolved.array.meta.data_type);
        match element {
            Some(expected) if expected != got => {
                return Err(Error::NativeDtypeMismatch {
                    index: info.index,
                    uri: info.uri.clone(),
                    expected,
                    got,
                });
            }
            _ => element = Some(got),
        }
    }
    Ok(element)
}

/// Plans one run of batches whose samples passed the batch-wide checks.
fn prepare_run(
    cfg: &Config,
    limits: &PlanLimits,
    stats: &StatCounters,
    cache: Option<(&DecodedCache, CacheUse)>,
    run: Run,
    per_batch: usize,
    out: &mut Vec<Ordered>,
) {
    let Run { id, batches, infos, samples, .. } = run;
    let mut inputs = gather_arrays(cfg, &infos, samples);
    // Each object-store request costs tens of milliseconds: ranges closer than the
    // object-store gap are cheaper read through than requested apart.
    let remote = infos.iter().any(|i| i.uri.to_str().is_some_and(store::is_remote_uri));
    let gap = if remote {
        limits.merge_gap_bytes.max(cfg.object_store.merge_gap_bytes)
    } else {
        limits.merge_gap_bytes
    };
    let limits = &PlanLimits { merge_gap_bytes: gap, ..*limits };
    let mut failed = Vec::new();
    let (plan, hits, claims) =
        match plan(cfg, limits, cache, &infos, &mut inputs, per_batch, &mut failed) {
            Ok(p) if failed.len() < batches => p,
            Ok(_) => {
                // Every batch failed.
                failed.sort_by_key(|(b, _)| *b);
                out.extend(failed.into_iter().map(|(_, e)| Ordered::Failed(e)));
                return;
            }
            Err(source) => {
                // A batch-wide error (a limit): every batch not failed yet fails with it,
                // naming its own first sample.
                for b in 0..batches {
                    let e = match failed.iter().position(|(f, _)| *f == b) {
                        Some(i) => failed.swap_remove(i).1,
                        None => sample_err(&infos, b * per_batch, source.clone()),
                    };
                    out.push(Ordered::Failed(e));
                }
                return;
            }
        };
    failed.sort_by_key(|(b, _)| *b);
    stats.plans.fetch_add(1, Ordering::Relaxed);
    let sample_bytes = cfg.sample_elements().unwrap_or(0) as usize * cfg.dtype.size(inputs.element);
    out.push(Ordered::Planned(Box::new(Planned {
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
        per_batch,
        failed,
        arrays: inputs.arrays,
        facts: inputs.facts,
        plan,
        positions: inputs.positions,
        hits,
        claims,
    })));
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

/// Resolves each sample's metadata into the run's distinct arrays. Samples that failed
/// to resolve are set aside (`early`), the rest become planner inputs. The run's samples
/// share one output element ([`batch_element`] checked each batch, and a run never mixes
/// two), so the first resolved sample's is the run's.
fn gather_arrays(cfg: &Config, infos: &[SampleInfo], samples: Vec<ReadySample>) -> Inputs {
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
        element = element.or(Some(cfg.dtype.element(r.entry.meta.data_type)));
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
    inputs
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

/// `Error::Sample` for the sample at batch position `pos` (run-wide), with `source`.
fn sample_err(infos: &[SampleInfo], pos: usize, source: SampleError) -> Error {
    match infos.get(pos) {
        Some(info) => {
            Error::Sample { index: info.index, uri: info.uri.clone(), source: Box::new(source) }
        }
        None => Error::Closed,
    }
}

/// Plans the run's samples, with the decoded-chunk cache's hits pinned (when there is a
/// cache). A planning error caused by one sample's data (a corrupt index, a zero-length or
/// implausibly large stored chunk, a box outside its array) names that sample; under
/// `OnError::Fill` the sample is set aside (filled and listed at delivery), under
/// `OnError::Fail` its batch is (in `failed`, with the error naming the sample, as
/// `(batch of the run, error)`), and the rest is planned again: one bad sample never costs
/// another sample (`Fill`) or another batch (`Fail`).
///
/// # Errors
/// A batch-wide planning error (a limit), for every batch of the run not failed yet.
fn plan(
    cfg: &Config,
    limits: &PlanLimits,
    cache: Option<(&DecodedCache, CacheUse)>,
    infos: &[SampleInfo],
    inputs: &mut Inputs,
    per_batch: usize,
    failed: &mut Vec<(usize, Error)>,
) -> Result<(planner::BatchPlan, Vec<CachePin>, Claims), SampleError> {
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
        let Some(s) = e.data_sample().filter(|&s| s < inputs.samples.len()) else {
            return Err(SampleError::Plan(Box::new(e)));
        };
        let pos = inputs.positions[s];
        let source = SampleError::Plan(Box::new(e));
        // Each pass removes at least one sample, so this ends.
        if cfg.on_error == OnError::Fill {
            inputs.samples.remove(s);
            inputs.positions.remove(s);
            inputs.early.push((pos, source));
        } else {
            let batch = pos / per_batch;
            failed.push((batch, sample_err(infos, pos, source)));
            let keep: Vec<bool> = inputs.positions.iter().map(|p| p / per_batch != batch).collect();
            let mut k = keep.iter();
            inputs.samples.retain(|_| *k.next().unwrap_or(&false));
            inputs.positions.retain(|p| p / per_batch != batch);
            inputs.early.retain(|(p, _)| p / per_batch != batch);
        }
    }
}

#[cfg(test)]
mod tests {
    use zarr::DataType;

    use super::Run;

    /// A batch starts a new plan where its `Native` element differs from the run's or
    /// where the run already holds the batches its element fits in the buffer; an
    /// unknown element (every sample failed to resolve) joins any run that has room.
    #[test]
    fn a_run_ends_at_another_element_or_when_its_buffer_is_full() {
        let run = |batches, element| Run { batches, element, ..Run::default() };
        let (u16s, f64s) = (Some(DataType::UInt16), Some(DataType::Float64));
        assert!(!run(0, None).ends_before(f64s, 1), "an empty run takes any batch");
        assert!(!run(3, u16s).ends_before(u16s, 4));
        assert!(run(4, u16s).ends_before(u16s, 4), "full");
        assert!(run(1, u16s).ends_before(f64s, 16), "another element");
        assert!(!run(1, u16s).ends_before(None, 4), "unknown joins");
        assert!(run(4, u16s).ends_before(None, 4), "unknown, but full");
        assert!(!run(2, None).ends_before(u16s, 4));
    }
}
