//! Property tests of `plan` over random arrays, shard layouts, boxes and limits.
//!
//! Shard layouts are a pure function of (array seed, shard coordinates), so two samples
//! over one shard see the same state, and the checker can recompute where every chunk is.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use planner::{ArrayEntry, BatchPlan, ChunkSource, OutDtype, PlanLimits, SampleInput, ShardState};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use zarr::{Aabb, ChunkLocation, DataType, FillValue, ShardIndex};

use crate::common::{meta, mix_coords};
use splitmix::splitmix64;

const DTYPES: [DataType; 4] =
    [DataType::UInt8, DataType::UInt16, DataType::Float32, DataType::Int64];

#[derive(Debug, Clone)]
struct ArraySpec {
    shape: Vec<u64>,
    grid: Vec<u64>,
    inner: Option<Vec<u64>>,
    dtype: DataType,
    seed: u64,
}

#[derive(Debug, Clone)]
struct Case {
    arrays: Vec<ArraySpec>,
    samples: Vec<(usize, Vec<u64>, Vec<u64>)>,
    limits: PlanLimits,
    overlaps: bool,
    out: OutDtype,
    perm_seed: u64,
}

impl ArraySpec {
    fn chunk_shape(&self) -> &[u64] {
        self.inner.as_deref().unwrap_or(&self.grid)
    }

    fn per_shard(&self) -> Vec<u64> {
        self.grid.iter().zip(self.chunk_shape()).map(|(g, c)| g / c).collect()
    }

    fn fill(&self) -> FillValue {
        // A non-zero fill so fills are told apart from zeroed memory.
        let mut bytes = vec![0u8; self.dtype.size()];
        bytes[0] = 7;
        FillValue::from_ne_bytes(self.dtype, &bytes).unwrap()
    }

    /// The state of the shard (or unsharded chunk object) at `coords`.
    fn state(&self, coords: &[u64], overlaps: bool) -> ShardState {
        let h = mix_coords(self.seed, coords);
        if h.is_multiple_of(10) {
            return ShardState::Absent;
        }
        if self.inner.is_none() {
            return ShardState::Whole { len: 1 + (h >> 8) % 50 };
        }
        let n: u64 = self.per_shard().iter().product();
        // Storage order is a seeded permutation of index order, as writers may reorder.
        let mut storage: Vec<u64> = (0..n).collect();
        storage.sort_by_key(|&i| splitmix64(h ^ i, 0));
        let mut entries = vec![ChunkLocation::Empty; n as usize];
        let mut cursor = (h >> 16) % 5;
        let mut prev: Option<(u64, u64)> = None;
        for i in storage {
            let r = splitmix64(h ^ (i + 1000), 0);
            if r.is_multiple_of(7) {
                continue;
            }
            let nbytes = 1 + (r >> 8) % 50;
            let gap = if r.is_multiple_of(3) { (r >> 20) % 8 } else { 0 };
            let offset = match prev {
                Some((po, pn)) if overlaps && r.is_multiple_of(5) => po + (r >> 24) % pn,
                _ => cursor + gap,
            };
            entries[i as usize] = ChunkLocation::Range { offset, nbytes };
            cursor = cursor.max(offset + nbytes);
            prev = Some((offset, nbytes));
        }
        ShardState::Present(Arc::new(ShardIndex::from_entries(entries)))
    }

    /// Where global chunk `chunk` is: its shard coordinates and index entry.
    fn locate(&self, chunk: &[u64], overlaps: bool) -> (Vec<u64>, ChunkLocation) {
        let per = self.per_shard();
        let shard: Vec<u64> = chunk.iter().zip(&per).map(|(c, p)| c / p).collect();
        let index = chunk.iter().zip(&per).fold(0, |acc, (c, p)| acc * p + c % p);
        let loc = match self.state(&shard, overlaps) {
            ShardState::Absent => ChunkLocation::Empty,
            ShardState::Whole { len } => ChunkLocation::Range { offset: 0, nbytes: len },
            ShardState::Present(idx) => idx.get(index).unwrap(),
        };
        (shard, loc)
    }
}

fn array_spec(rank: usize, dtype: Option<DataType>) -> impl Strategy<Value = ArraySpec> {
    (
        vec(1u64..=16, rank),
        vec(1u64..=5, rank),
        vec(1u64..=3, rank),
        any::<bool>(),
        any::<u64>(),
        0usize..DTYPES.len(),
    )
        .prop_map(move |(shape, chunk, mult, sharded, seed, dt)| {
            let dtype = dtype.unwrap_or(DTYPES[dt]);
            if sharded {
                let grid = chunk.iter().zip(&mult).map(|(c, m)| c * m).collect();
                ArraySpec { shape, grid, inner: Some(chunk), dtype, seed }
            } else {
                ArraySpec { shape, grid: chunk, inner: None, dtype, seed }
            }
        })
}

fn box_in(shape: &[u64]) -> impl Strategy<Value = (Vec<u64>, Vec<u64>)> + use<> {
    shape
        .iter()
        .map(|&e| (0..e).prop_flat_map(move |lo| (Just(lo), lo + 1..=e)))
        .collect::<Vec<_>>()
        .prop_map(|axes| axes.into_iter().unzip())
}

fn limits(overlaps: bool) -> impl Strategy<Value = PlanLimits> {
    (1u64..=300, 1u64..=16, 50u64..=600, 0u64..=8000, prop_oneof![Just(0u64), 0u64..=10]).prop_map(
        move |(read, chunks, staging, decomp, gap)| {
            // Any single chunk fits an empty wave (≤ 50 bytes, ≤ 5³×8 decoded bytes);
            // with overlapping ranges, forced merges may grow without bound, so the wave
            // caps are lifted and only the read cap stays tight.
            let big = 1u64 << 40;
            PlanLimits {
                max_read_op_bytes: read,
                max_chunks_per_wave: if overlaps { big } else { chunks },
                max_staging_bytes_per_wave: if overlaps { big } else { staging },
                max_decompressed_bytes_per_wave: if overlaps { big } else { 1000 + decomp },
                max_chunk_decompressed_bytes: 1 << 20,
                merge_gap_bytes: gap,
            }
        },
    )
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..=3, any::<bool>(), any::<bool>(), 0usize..DTYPES.len())
        .prop_flat_map(|(rank, native, overlaps, dt)| {
            let dtype = native.then_some(DTYPES[dt]);
            (
                vec(array_spec(rank, dtype), 1..=3),
                Just(native),
                Just(overlaps),
                limits(overlaps),
                any::<u64>(),
            )
        })
        .prop_flat_map(|(arrays, native, overlaps, limits, perm_seed)| {
            let pick = {
                let arrays = arrays.clone();
                (0..arrays.len()).prop_flat_map(move |a| {
                    (Just(a), box_in(&arrays[a].shape)).prop_map(|(a, (lo, hi))| (a, lo, hi))
                })
            };
            (
                vec(pick, 1..=6),
                Just(arrays),
                Just(native),
                Just(overlaps),
                Just(limits),
                Just(perm_seed),
            )
        })
        .prop_map(|(samples, arrays, native, overlaps, limits, perm_seed)| Case {
            arrays,
            samples,
            limits,
            overlaps,
            out: if native { OutDtype::Native } else { OutDtype::F32 },
            perm_seed,
        })
}

fn build(case: &Case, order: &[usize]) -> (Vec<ArrayEntry>, Vec<SampleInput>) {
    let arrays: Vec<ArrayEntry> = case
        .arrays
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let m = meta(&a.shape, &a.grid, a.inner.as_deref(), a.dtype, a.fill());
            ArrayEntry::new(format!("a{i}"), m).unwrap()
        })
        .collect();
    let samples = order
        .iter()
        .map(|&s| {
            let (a, lo, hi) = &case.samples[s];
            let aabb = Aabb::new(lo.clone(), hi.clone()).unwrap();
            let hits = arrays[*a].geometry.intersect(&aabb).unwrap();
            let shards =
                hits.iter().map(|h| case.arrays[*a].state(&h.shard, case.overlaps)).collect();
            SampleInput { array: planner::ArrayId(*a as u32), aabb, shards }
        })
        .collect();
    (arrays, samples)
}

/// Every point of a box, in C order.
fn points(b: &Aabb) -> Vec<Vec<u64>> {
    let mut out = vec![b.lo.to_vec()];
    for axis in (0..b.rank()).rev() {
        out = out
            .into_iter()
            .flat_map(|p| {
                (b.lo[axis]..b.hi[axis]).map(move |x| {
                    let mut q = p.clone();
                    q[axis] = x;
                    q
                })
            })
            .collect();
    }
    out
}

fn check(case: &Case, plan: &BatchPlan) -> Result<(), TestCaseError> {
    let lim = &case.limits;
    // Chunks: copies grouped by read in order, then fills.
    let mut next = 0;
    for (r, read) in plan.reads.iter().enumerate() {
        prop_assert_eq!(read.chunks.start, next);
        prop_assert!(!read.chunks.is_empty());
        next = read.chunks.end;
        let mut ranges = Vec::new();
        for c in &plan.chunks[read.chunks.clone()] {
            let ChunkSource::Copy { read: cr, offset_in_read, compressed_len, .. } = c.source
            else {
                return Err(TestCaseError::fail("fill chunk inside a read group"));
            };
            prop_assert_eq!(cr, r);
            // The compressed range lies inside the read.
            prop_assert!(offset_in_read + compressed_len <= read.len);
            ranges.push((
                read.offset + offset_in_read,
                read.offset + offset_in_read + compressed_len,
            ));
            // ... and is where the shard index says the chunk is.
            let spec = &case.arrays[c.array.index()];
            let (shard, loc) = spec.locate(&c.chunk, case.overlaps);
            prop_assert_eq!(&plan.files[read.file].coords, &shard);
            prop_assert_eq!(plan.files[read.file].array, c.array);
            prop_assert_eq!(
                loc,
                ChunkLocation::Range {
                    offset: read.offset + offset_in_read,
                    nbytes: compressed_len
                }
            );
        }
        // Ranges in offset order; the read spans exactly from the first start to the last
        // end; what it reads beyond the chunks is merged gaps no larger than allowed.
        prop_assert!(ranges.windows(2).all(|w| w[0].0 <= w[1].0));
        prop_assert_eq!(ranges[0].0, read.offset);
        let mut end = 0;
        let mut gaps = 0;
        // End of the read as it stood after the last chunk that merged by choice (it
        // started at or after the read's end); later chunks overlapped and were forced in.
        let mut chosen_end = ranges[0].1;
        for (i, &(s, e)) in ranges.iter().enumerate() {
            if i > 0 {
                prop_assert!(s <= end + lim.merge_gap_bytes);
                gaps += s.saturating_sub(end);
                if s >= end {
                    chosen_end = end.max(e);
                }
            }
            end = end.max(e);
        }
        prop_assert_eq!(end, read.end());
        let sum: u64 = ranges.iter().map(|(s, e)| e - s).sum();
        prop_assert!(read.len <= sum + gaps);
        // Over the cap only when it cannot be split (one chunk, or overlapping ranges).
        // Over the cap only when one chunk is, or overlapping ranges forced it: every
        // merge by choice kept the read under the cap.
        if ranges.len() > 1 && chosen_end != ranges[0].1 {
            prop_assert!(
                chosen_end - read.offset <= lim.max_read_op_bytes,
                "read {:?} over the cap",
                read
            );
        }
        if !case.overlaps && read.len > lim.max_read_op_bytes {
            prop_assert_eq!(ranges.len(), 1, "read {:?} over the cap", read);
        }
    }
    prop_assert_eq!(next, plan.fills.start);
    prop_assert_eq!(plan.fills.end, plan.chunks.len());
    for c in &plan.chunks[plan.fills.clone()] {
        let spec = &case.arrays[c.array.index()];
        prop_assert_eq!(spec.locate(&c.chunk, case.overlaps).1, ChunkLocation::Empty);
        prop_assert_eq!(c.source, ChunkSource::Fill { value: spec.fill() });
    }

    // Reads per file: disjoint and in offset order as emitted (interleaving keeps it);
    // consecutive reads could not have been merged.
    let mut per_file: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (r, read) in plan.reads.iter().enumerate() {
        per_file.entry(read.file).or_default().push(r);
    }
    for rs in per_file.values() {
        for w in rs.windows(2) {
            let (a, b) = (&plan.reads[w[0]], &plan.reads[w[1]]);
            prop_assert!(a.end() <= b.offset, "reads {:?} and {:?} overlap or are unsorted", a, b);
            let decomp = |r: &planner::ReadOp| -> u64 {
                plan.chunks[r.chunks.clone()].iter().map(|c| c.decompressed_len()).sum()
            };
            let mergeable = b.offset <= a.end() + lim.merge_gap_bytes
                && b.end() - a.offset <= lim.max_read_op_bytes.min(lim.max_staging_bytes_per_wave)
                && (a.chunks.len() + b.chunks.len()) as u64 <= lim.max_chunks_per_wave
                && decomp(a) + decomp(b) <= lim.max_decompressed_bytes_per_wave
                && b.chunks.len() == 1;
            prop_assert!(!mergeable, "reads {:?} and {:?} should have merged", a, b);
        }
    }
    // Round-robin: files in canonical order, one read each per round.
    let counts: Vec<usize> = (0..plan.files.len()).map(|f| per_file[&f].len()).collect();
    let mut expected = Vec::new();
    for round in 0..counts.iter().copied().max().unwrap_or(0) {
        expected.extend((0..counts.len()).filter(|&f| counts[f] > round));
    }
    let got: Vec<usize> = plan.reads.iter().map(|r| r.file).collect();
    prop_assert_eq!(got, expected);
    let keys: Vec<_> = plan.files.iter().map(|f| (f.array, f.coords.clone())).collect();
    prop_assert!(keys.windows(2).all(|w| w[0] < w[1]));

    // Waves: contiguous runs of whole reads, under every cap.
    let mut next_read = 0;
    for w in &plan.waves {
        prop_assert_eq!(w.reads.start, next_read);
        prop_assert!(!w.reads.is_empty());
        next_read = w.reads.end;
        let reads = &plan.reads[w.reads.clone()];
        prop_assert_eq!(w.chunks.start, reads[0].chunks.start);
        prop_assert_eq!(w.chunks.end, reads[reads.len() - 1].chunks.end);
        let staging: u64 = reads.iter().map(|r| r.len).sum();
        let decomp: u64 = plan.chunks[w.chunks.clone()].iter().map(|c| c.decompressed_len()).sum();
        prop_assert_eq!(w.staging_bytes, staging);
        prop_assert_eq!(w.decompressed_bytes, decomp);
        prop_assert!(staging <= lim.max_staging_bytes_per_wave);
        prop_assert!(decomp <= lim.max_decompressed_bytes_per_wave);
        prop_assert!(w.chunks.len() as u64 <= lim.max_chunks_per_wave);
    }
    prop_assert_eq!(next_read, plan.reads.len());

    // Each chunk planned once; every voxel of every sample placed exactly once, at the
    // right place.
    let distinct: BTreeSet<_> = plan.chunks.iter().map(|c| (c.array, c.chunk.clone())).collect();
    prop_assert_eq!(distinct.len(), plan.chunks.len());
    let mut counts: Vec<Vec<u8>> = case
        .samples
        .iter()
        .map(|(_, lo, hi)| vec![0; lo.iter().zip(hi).map(|(l, h)| (h - l) as usize).product()])
        .collect();
    for c in &plan.chunks {
        let spec = &case.arrays[c.array.index()];
        let cs = spec.chunk_shape();
        prop_assert!(c.placements.windows(2).all(|w| w[0].sample < w[1].sample));
        for p in &c.placements {
            let (a, lo, hi) = &case.samples[p.sample];
            prop_assert_eq!(*a, c.array.index());
            prop_assert_eq!(p.in_chunk.shape(), p.in_sample.shape());
            for axis in 0..lo.len() {
                prop_assert!(p.in_chunk.hi[axis] <= cs[axis]);
                prop_assert_eq!(
                    c.chunk[axis] * cs[axis] + p.in_chunk.lo[axis],
                    lo[axis] + p.in_sample.lo[axis]
                );
            }
            for q in points(&p.in_sample) {
                let lin = (0..lo.len()).fold(0usize, |acc, axis| {
                    acc * (hi[axis] - lo[axis]) as usize + q[axis] as usize
                });
                counts[p.sample][lin] += 1;
            }
        }
    }
    prop_assert!(counts.iter().flatten().all(|&n| n == 1));

    // Stats.
    let s = &plan.stats;
    prop_assert_eq!(s.bytes_read, plan.reads.iter().map(|r| r.len).sum::<u64>());
    prop_assert!(s.bytes_read <= s.compressed_bytes_used + s.gap_bytes);
    prop_assert_eq!(s.copy_chunks + s.fill_chunks, plan.chunks.len() as u64);
    let voxels: u64 = counts.iter().map(|c| c.len() as u64).sum();
    prop_assert_eq!(s.voxels_delivered, voxels);
    Ok(())
}

fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    p.sort_by_key(|&i| splitmix64(seed ^ i as u64, 0));
    p
}

proptest! {
    // Failures are kept in the committed `proptest-regressions/` (integration tests have
    // no lib.rs beside them, so the default source-relative persistence is off).
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("proptest-regressions/props.txt"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn plans_hold_every_invariant(case in case()) {
        let identity: Vec<usize> = (0..case.samples.len()).collect();
        let (arrays, samples) = build(&case, &identity);
        let plan = planner::plan(&arrays, &samples, &case.limits, case.out).unwrap();
        check(&case, &plan)?;

        // Deterministic: the same input twice gives the same plan.
        let again = planner::plan(&arrays, &samples, &case.limits, case.out).unwrap();
        prop_assert_eq!(&again, &plan);

        // Permuting samples changes placements' sample numbers only.
        let perm = permutation(case.samples.len(), case.perm_seed);
        let (arrays_p, samples_p) = build(&case, &perm);
        let permuted = planner::plan(&arrays_p, &samples_p, &case.limits, case.out).unwrap();
        prop_assert_eq!(&permuted.reads, &plan.reads);
        prop_assert_eq!(&permuted.files, &plan.files);
        prop_assert_eq!(&permuted.waves, &plan.waves);
        prop_assert_eq!(permuted.stats, plan.stats);
        prop_assert_eq!(permuted.chunks.len(), plan.chunks.len());
        for (a, b) in permuted.chunks.iter().zip(&plan.chunks) {
            prop_assert_eq!((a.array, &a.chunk, a.source), (b.array, &b.chunk, b.source));
            let mut mapped: Vec<_> = a.placements.iter()
                .map(|p| (perm[p.sample], p.in_chunk.clone(), p.in_sample.clone()))
                .collect();
            mapped.sort_by_key(|m| m.0);
            let orig: Vec<_> = b.placements.iter()
                .map(|p| (p.sample, p.in_chunk.clone(), p.in_sample.clone()))
                .collect();
            prop_assert_eq!(mapped, orig);
        }
    }
}

/// Claims a pseudo-random subset of the stored chunks offered (by a hash of the identity),
/// numbering its hits in the order asked, and records every identity it was asked about
/// and how many it had been asked when told the lookups are over (`done`).
struct SomeProbe {
    seed: u64,
    asked: Vec<(u32, String, u64, u64)>,
    claimed: Vec<(u32, String, u64, u64)>,
    done_after: Vec<usize>,
}

impl planner::ChunkProbe for SomeProbe {
    fn probe(&mut self, c: &planner::StoredChunk<'_>) -> Option<u32> {
        let id = (c.array.0, c.key.to_string(), c.offset, c.nbytes);
        self.asked.push(id.clone());
        let h = splitmix64(self.seed ^ c.offset.wrapping_mul(31) ^ c.nbytes ^ id.1.len() as u64, 7);
        if h.is_multiple_of(3) {
            return None;
        }
        self.claimed.push(id);
        Some(self.claimed.len() as u32 - 1)
    }

    fn done(&mut self) {
        self.done_after.push(self.asked.len());
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("proptest-regressions/props.txt"))),
        ..ProptestConfig::default()
    })]

    /// A cache probe moves exactly the chunks it claims out of the reads into the
    /// plan's cached range, with the same placements; every other chunk is planned as
    /// without a probe, and nothing is lost or duplicated.
    #[test]
    fn probed_chunks_become_cache_hits_and_leave_the_reads(case in case(), seed in any::<u64>()) {
        let identity: Vec<usize> = (0..case.samples.len()).collect();
        let (arrays, samples) = build(&case, &identity);
        let plain = planner::plan(&arrays, &samples, &case.limits, case.out).unwrap();
        let mut probe = SomeProbe { seed, asked: Vec::new(), claimed: Vec::new(), done_after: Vec::new() };
        let probed = planner::plan_with_probe(&arrays, &samples, &case.limits, case.out, &mut probe).unwrap();

        // Asked once per distinct stored chunk, then told once that the lookups are over
        // (where the engines' probe lets the cache's lock go), and never asked after.
        prop_assert_eq!(probe.asked.len() as u64, plain.stats.copy_chunks);
        prop_assert_eq!(&probe.done_after, &vec![probe.asked.len()]);
        prop_assert_eq!(probed.cached.clone().count(), probe.claimed.len());
        prop_assert_eq!(probed.cached.end, probed.fills.start);
        prop_assert_eq!(probed.cached.start as u64, probed.stats.copy_chunks);
        prop_assert_eq!(probed.stats.cached_chunks, probe.claimed.len() as u64);
        prop_assert_eq!(
            probed.stats.decompressed_bytes + probed.stats.cached_bytes,
            plain.stats.decompressed_bytes
        );
        // Reads hold copies only, and no claimed chunk.
        for r in &probed.reads {
            for c in &probed.chunks[r.chunks.clone()] {
                let is_copy = matches!(c.source, ChunkSource::Copy { .. });
                prop_assert!(is_copy);
            }
        }
        // Every chunk of the plain plan appears once in the probed one, with the same
        // placements; hit numbers are distinct and in range.
        let key = |c: &planner::ChunkPlan| (c.array, c.chunk.clone());
        let mut by_key: std::collections::HashMap<_, _> =
            probed.chunks.iter().map(|c| (key(c), c)).collect();
        prop_assert_eq!(by_key.len(), probed.chunks.len());
        let mut hits_seen = std::collections::HashSet::new();
        for c in &plain.chunks {
            let p = by_key.remove(&key(c)).expect("chunk lost");
            prop_assert_eq!(&p.placements, &c.placements);
            match (c.source, p.source) {
                (ChunkSource::Copy { decompressed_len: a, .. }, ChunkSource::Cached { hit, decompressed_len: b }) => {
                    prop_assert_eq!(a, b);
                    prop_assert!((hit as usize) < probe.claimed.len());
                    prop_assert!(hits_seen.insert(hit));
                }
                (ChunkSource::Copy { .. }, ChunkSource::Copy { .. }) => {}
                (a, b) => prop_assert_eq!(a, b),
            }
        }
        prop_assert!(by_key.is_empty());
    }
}
