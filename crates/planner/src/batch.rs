//! Planning one batch: walk the samples' chunk hits, plan each distinct chunk once,
//! coalesce each file's ranges into reads, interleave the files and pack waves.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;
use std::sync::Arc;

use zarr::geometry::{ChunkView, Intersection, ShardView};
use zarr::{ChunkLocation, DataType, FillValue};

use crate::cast::OutDtype;
use crate::error::{Error, Result};
use crate::input::{ArrayEntry, ArrayId, PlanLimits, SampleInput, ShardState};
use crate::plan::{
    BatchPlan, ChunkPlan, ChunkProbe, ChunkSource, FileRef, NoProbe, Placement, PlanStats, ReadOp,
    StoredChunk, Wave,
};

/// A touched object while the batch is walked.
struct FileBuild {
    array: ArrayId,
    coords: Vec<u64>,
    key: Arc<str>,
    state: ShardState,
    /// Stored chunks of this file (indices into the chunk builds).
    copies: Vec<usize>,
}

#[derive(Clone, Copy)]
enum Stored {
    Range {
        offset: u64,
        nbytes: u64,
        decompressed: u64,
    },
    /// A stored chunk the probe found decoded in the engine's cache.
    Cached {
        hit: u32,
        decompressed: u64,
    },
    Fill(FillValue),
}

struct ChunkBuild {
    array: ArrayId,
    /// Its file (index into the walk's files).
    file: usize,
    chunk: Vec<u64>,
    stored: Stored,
    placements: Vec<Placement>,
}

/// A read op under construction.
struct OpBuild {
    file: usize,
    offset: u64,
    end: u64,
    decompressed: u64,
    gap: u64,
    /// Its chunk builds: a range of [`Coalesced::chunks`] (a file's chunks in offset
    /// order, so each read's group is a contiguous run of them).
    chunks: Range<usize>,
}

/// Every file's reads, from [`coalesce`].
struct Coalesced {
    /// All read ops, file after file in canonical file order.
    ops: Vec<OpBuild>,
    /// Per file in canonical order, its range of `ops`.
    per_file: Vec<Range<usize>>,
    /// Chunk builds in read order.
    chunks: Vec<usize>,
}

/// Plans one batch.
///
/// Deterministic: the same input gives the same plan, and permuting `samples` changes only
/// the `sample` fields of placements (and their order within a chunk).
///
/// # Errors
/// - `UnknownArray`, `Geometry`, `ShardCount`, `ShardStateKind`, `IndexEntries`,
///   `InconsistentShard`, `ZeroLengthChunk` for inputs that do not describe the batch;
/// - `NoCastPath` when `out` is `Native` and the samples' data types differ;
/// - `Budget` naming `max_chunk_decompressed_bytes` for a chunk too large to decode or
///   whose stored size exceeds the larger of that cap and twice its decoded size, or
///   the wave knob (`max_staging_bytes_per_wave`, `max_chunks_per_wave`,
///   `max_decompressed_bytes_per_wave`) that one read group alone exceeds;
/// - `Overflow` for sizes that do not fit in `u64`.
pub fn plan<L>(
    arrays: &[ArrayEntry<L>],
    samples: &[SampleInput],
    limits: &PlanLimits,
    out: OutDtype,
) -> Result<BatchPlan> {
    plan_with_probe(arrays, samples, limits, out, &mut NoProbe)
}

/// [`plan`] with a decoded-chunk cache: each distinct stored chunk is offered to `probe`
/// once ([`StoredChunk`], its stored identity); a chunk the probe claims becomes a
/// [`ChunkSource::Cached`] chunk (in [`BatchPlan::cached`]): no read, no decode, and its
/// bytes no longer take part in coalescing. Everything else is planned as by [`plan`].
///
/// # Errors
/// As [`plan`].
pub fn plan_with_probe<L>(
    arrays: &[ArrayEntry<L>],
    samples: &[SampleInput],
    limits: &PlanLimits,
    out: OutDtype,
    probe: &mut dyn ChunkProbe,
) -> Result<BatchPlan> {
    // A 128³ crop over 32×64×64 chunks touches about 45 chunks in up to 4 shards.
    let mut walk = Walk {
        file_map: HashMap::with_capacity_and_hasher(samples.len() * 4, Default::default()),
        chunk_map: HashMap::with_capacity_and_hasher(samples.len() * 48, Default::default()),
        chunks: Vec::with_capacity(samples.len() * 48),
        ..Walk::default()
    };
    let mut element: Option<DataType> = None;
    for (s, sample) in samples.iter().enumerate() {
        let entry = arrays.get(sample.array.index()).ok_or(Error::UnknownArray {
            sample: s,
            array: sample.array.0,
            arrays: arrays.len(),
        })?;
        let source = entry.meta.data_type;
        let want = out.element(source);
        match element {
            None => element = Some(want),
            Some(e) if e != want => {
                return Err(Error::NoCastPath { sample: s, from: source, to: e });
            }
            Some(_) => {}
        }
        walk.sample(s, sample, entry, limits)?;
    }
    walk.probe(probe);
    let order = walk.file_order();
    let coalesced = coalesce(&walk, &order, limits)?;
    assemble(walk, order, coalesced, limits, element)
}

#[derive(Default)]
struct Walk {
    files: Vec<FileBuild>,
    /// Files by `[array, shard coordinates...]`: one vector whose slices can be looked up
    /// without building an owned key per shard hit.
    file_map: HashMap<Vec<u64>, usize, KeyHash>,
    /// Reused lookup key for `file_map`.
    file_key: Vec<u64>,
    /// Reused intersection buffers: one box's hits at a time.
    hits: Intersection,
    chunks: Vec<ChunkBuild>,
    chunk_map: HashMap<(usize, u64), usize, KeyHash>,
    voxels: u64,
    bytes_delivered: u64,
}

/// The walk's maps are keyed by small integers (file numbers, chunk indexes, grid
/// coordinates) and looked up once per chunk hit, where SipHash cost a tenth of a plan. This
/// is the multiply-rotate hash rustc uses for its own integer-keyed maps (FxHash). The maps
/// are never iterated, so the hash cannot change a plan.
type KeyHash = BuildHasherDefault<FxHasher>;

#[derive(Default)]
struct FxHasher {
    hash: u64,
}

impl FxHasher {
    fn word(&mut self, w: u64) {
        self.hash = (self.hash.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            self.word(u64::from_le_bytes(b));
        }
        for &b in words.remainder() {
            self.word(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.word(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.word(n as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

/// `a + b`, or `Overflow` naming `what`. The error is built only on overflow: this runs per
/// chunk and per read, and an eagerly built error must be dropped on every success.
fn add(a: u64, b: u64, what: &'static str) -> Result<u64> {
    match a.checked_add(b) {
        Some(sum) => Ok(sum),
        None => Err(Error::Overflow { what }),
    }
}

/// One sample's part of the walk: the sample, its array, and the sizes its chunk hits are
/// checked against.
struct SampleWalk<'a, L> {
    /// The sample's position in the batch.
    s: usize,
    sample: &'a SampleInput,
    entry: &'a ArrayEntry<L>,
    limits: &'a PlanLimits,
    /// A chunk's decoded size in bytes.
    decompressed: u64,
    /// The index entries of a present shard.
    per_shard: u64,
}

impl Walk {
    fn sample<L>(
        &mut self,
        s: usize,
        sample: &SampleInput,
        entry: &ArrayEntry<L>,
        limits: &PlanLimits,
    ) -> Result<()> {
        let geometry = &entry.geometry;
        let geo_err = |source| Error::Geometry { sample: s, uri: entry.uri.clone(), source };
        // Taken out of `self` so that its views can be read while `self` is updated; put
        // back below (after an error the plan is abandoned, so its buffers may go).
        let mut hits = std::mem::take(&mut self.hits);
        geometry.intersect_into(&sample.aabb, &mut hits).map_err(geo_err)?;
        if hits.num_shards() != sample.shards.len() {
            return Err(Error::ShardCount {
                sample: s,
                uri: entry.uri.clone(),
                expected: hits.num_shards(),
                got: sample.shards.len(),
            });
        }
        let dtype = entry.meta.data_type;
        let voxels = sample.aabb.num_elements().map_err(geo_err)?;
        self.deliver(voxels, dtype.size() as u64)?;
        let decompressed = geometry
            .chunk_num_elements()
            .ok()
            .and_then(|n| n.checked_mul(dtype.size() as u64))
            .ok_or(Error::Overflow { what: "decompressed chunk size" })?;
        let per_shard = geometry.num_chunks_per_shard().map_err(geo_err)?;
        let walk = SampleWalk { s, sample, entry, limits, decompressed, per_shard };
        for (hit, state) in hits.shards().zip(&sample.shards) {
            self.shard(&walk, &hit, state)?;
        }
        self.hits = hits;
        Ok(())
    }

    /// Counts a sample's `voxels` of `element_size` bytes into the delivered totals.
    fn deliver(&mut self, voxels: u64, element_size: u64) -> Result<()> {
        self.voxels = add(self.voxels, voxels, "voxels delivered")?;
        let bytes = voxels.checked_mul(element_size);
        self.bytes_delivered = add(
            self.bytes_delivered,
            bytes.ok_or(Error::Overflow { what: "bytes delivered" })?,
            "bytes delivered",
        )?;
        Ok(())
    }

    /// One touched shard: its file, then a placement in each chunk it hits.
    fn shard<L>(
        &mut self,
        walk: &SampleWalk<'_, L>,
        hit: &ShardView<'_>,
        state: &ShardState,
    ) -> Result<()> {
        let f = self.file(walk, hit.coords, state)?;
        for ch in hit.chunks() {
            let c = self.chunk(walk, f, &ch)?;
            self.chunks[c].placements.push(Placement {
                sample: walk.s,
                in_chunk: ch.in_chunk.to_aabb(),
                in_sample: ch.in_sample.to_aabb(),
            });
        }
        Ok(())
    }

    /// The file of the shard at `coords`, added when first touched; every sample that
    /// touches it must report the same state.
    fn file<L>(
        &mut self,
        walk: &SampleWalk<'_, L>,
        coords: &[u64],
        state: &ShardState,
    ) -> Result<usize> {
        self.file_key.clear();
        self.file_key.push(u64::from(walk.sample.array.0));
        self.file_key.extend_from_slice(coords);
        if let Some(&f) = self.file_map.get(self.file_key.as_slice()) {
            if !self.files[f].state.same_as(state) {
                return Err(Error::InconsistentShard {
                    sample: walk.s,
                    key: self.files[f].key.clone(),
                });
            }
            return Ok(f);
        }
        let f = self.files.len();
        self.files.push(walk.new_file(coords, state)?);
        self.file_map.insert(self.file_key.clone(), f);
        Ok(f)
    }

    /// The chunk build of hit `ch` in file `f`, planned when first touched.
    fn chunk<L>(
        &mut self,
        walk: &SampleWalk<'_, L>,
        f: usize,
        ch: &ChunkView<'_>,
    ) -> Result<usize> {
        let e = match self.chunk_map.entry((f, ch.index_in_shard)) {
            Entry::Occupied(e) => return Ok(*e.get()),
            Entry::Vacant(e) => e,
        };
        let file = &mut self.files[f];
        let stored = walk.stored(file, ch)?;
        let c = self.chunks.len();
        if matches!(stored, Stored::Range { .. }) {
            file.copies.push(c);
        }
        self.chunks.push(ChunkBuild {
            array: walk.sample.array,
            file: f,
            chunk: ch.chunk.to_vec(),
            stored,
            placements: Vec::new(),
        });
        Ok(*e.insert(c))
    }

    /// Offers every stored chunk of the walk to `probe`, in the order the samples first
    /// touched them, and turns the chunks it claims into cache hits; then tells the probe
    /// it is done ([`ChunkProbe::done`]).
    ///
    /// The lookups run back to back after the walk, not interleaved with it, so a probe
    /// that holds a lock across its lookups (the engines' cache) holds it only for them,
    /// and several batches can be walked at once.
    fn probe(&mut self, probe: &mut dyn ChunkProbe) {
        let mut hits = false;
        for build in &mut self.chunks {
            let Stored::Range { offset, nbytes, decompressed } = build.stored else { continue };
            let id = StoredChunk {
                array: build.array,
                key: &self.files[build.file].key,
                offset,
                nbytes,
                decompressed,
            };
            if let Some(hit) = probe.probe(&id) {
                build.stored = Stored::Cached { hit, decompressed };
                hits = true;
            }
        }
        probe.done();
        if hits {
            let chunks = &self.chunks;
            for file in &mut self.files {
                file.copies.retain(|&c| matches!(chunks[c].stored, Stored::Range { .. }));
            }
        }
    }

    /// Files in a canonical order (array, then grid coordinates), independent of the
    /// order samples arrived in.
    fn file_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.files.len()).collect();
        order.sort_by(|&a, &b| {
            let (fa, fb) = (&self.files[a], &self.files[b]);
            (fa.array, &fa.coords).cmp(&(fb.array, &fb.coords))
        });
        order
    }

    fn range(&self, c: usize) -> (u64, u64, u64) {
        match self.chunks[c].stored {
            Stored::Range { offset, nbytes, decompressed } => (offset, nbytes, decompressed),
            Stored::Cached { .. } | Stored::Fill(_) => (0, 0, 0),
        }
    }
}

impl<L> SampleWalk<'_, L> {
    /// A file for a shard first touched by this sample, once its state is checked against
    /// the array: the kind of object, and a present shard's index length.
    fn new_file(&self, coords: &[u64], state: &ShardState) -> Result<FileBuild> {
        let sharded = self.entry.geometry.sharded;
        let kind_ok = match state {
            ShardState::Present(_) => sharded,
            ShardState::Whole { .. } => !sharded,
            ShardState::Absent => true,
        };
        let coords = coords.to_vec();
        let key = self.entry.file_key(&coords);
        if !kind_ok {
            return Err(Error::ShardStateKind {
                sample: self.s,
                key,
                state: state.name(),
                sharded,
            });
        }
        if let ShardState::Present(index) = state
            && index.len() as u64 != self.per_shard
        {
            return Err(Error::IndexEntries {
                sample: self.s,
                key,
                expected: self.per_shard,
                got: index.len() as u64,
            });
        }
        Ok(FileBuild {
            array: self.sample.array,
            coords,
            key,
            state: state.clone(),
            copies: Vec::new(),
        })
    }

    /// Fill or copy: how chunk hit `ch` of `file` is stored.
    fn stored(&self, file: &FileBuild, ch: &ChunkView<'_>) -> Result<Stored> {
        let location = match &file.state {
            ShardState::Absent => ChunkLocation::Empty,
            ShardState::Whole { len } => ChunkLocation::Range { offset: 0, nbytes: *len },
            // In range: the entry count was checked against the shard.
            ShardState::Present(index) => {
                index.get(ch.index_in_shard).unwrap_or(ChunkLocation::Empty)
            }
        };
        match location {
            ChunkLocation::Empty => Ok(Stored::Fill(self.entry.meta.fill_value)),
            ChunkLocation::Range { nbytes: 0, .. } => Err(Error::ZeroLengthChunk {
                sample: self.s,
                key: file.key.clone(),
                chunk: ch.chunk.to_vec(),
            }),
            ChunkLocation::Range { offset, nbytes } => self.copy(file, ch, offset, nbytes),
        }
    }

    /// A stored chunk at `offset..offset + nbytes`, checked against the chunk caps.
    fn copy(
        &self,
        file: &FileBuild,
        ch: &ChunkView<'_>,
        offset: u64,
        nbytes: u64,
    ) -> Result<Stored> {
        if offset.checked_add(nbytes).is_none() {
            return Err(Error::Overflow { what: "chunk end offset" });
        }
        let cap = self.limits.max_chunk_decompressed_bytes;
        let decompressed = self.decompressed;
        if decompressed > cap {
            return Err(Error::Budget {
                knob: "max_chunk_decompressed_bytes",
                needed: decompressed,
                limit: cap,
            });
        }
        // Stored bytes are read whole into memory: a forged index entry (or a huge
        // unsharded object) must not size a buffer past the chunk cap. Legitimate encodings
        // stay far below twice their decoded size except in tiny chunks.
        // Such an entry is the data's fault (a forged or corrupt index), not the
        // configuration's: it names the sample, so `OnError::Fill` can fill just that one.
        let stored_cap = cap.max(decompressed.saturating_mul(2));
        if nbytes > stored_cap {
            return Err(Error::ChunkTooLarge {
                sample: self.s,
                key: file.key.clone(),
                chunk: ch.chunk.to_vec(),
                nbytes,
                limit: stored_cap,
            });
        }
        Ok(Stored::Range { offset, nbytes, decompressed })
    }
}

/// Merges each file's chunk ranges into read ops, returned per file in `order`.
///
/// Ranges merge when the next one starts within `merge_gap_bytes` of the current read's
/// end and the merged read stays within the read-size cap and every per-wave cap (so that
/// merging never makes a group too big for a wave). A range that overlaps the read so far
/// always merges: reads of one file must stay disjoint.
fn coalesce(walk: &Walk, order: &[usize], limits: &PlanLimits) -> Result<Coalesced> {
    let byte_cap = limits.max_read_op_bytes.min(limits.max_staging_bytes_per_wave);
    let mut per_file = Vec::with_capacity(order.len());
    let mut ops: Vec<OpBuild> = Vec::new();
    let mut ordered = Vec::with_capacity(walk.chunks.len());
    // (offset, length, chunk build) per copy of one file, reused across files.
    let mut copies: Vec<(u64, u64, usize)> = Vec::new();
    for &f in order {
        copies.clear();
        copies.extend(walk.files[f].copies.iter().map(|&c| {
            let (o, n, _) = walk.range(c);
            (o, n, c)
        }));
        // (offset, length, chunk coordinates) is unique within a file, so an unstable sort
        // is deterministic. The coordinates break ties only between equal ranges, so the
        // comparison reads them only then.
        copies.sort_unstable_by(|&(oa, na, a), &(ob, nb, b)| {
            (oa, na).cmp(&(ob, nb)).then_with(|| walk.chunks[a].chunk.cmp(&walk.chunks[b].chunk))
        });
        let first_op = ops.len();
        for &(o, n, c) in &copies {
            let (_, _, d) = walk.range(c);
            // Checked when the chunk was planned.
            let e = o.saturating_add(n);
            if ops.len() > first_op
                && let Some(op) = ops.last_mut()
            {
                let new_end = op.end.max(e);
                let overlaps = o < op.end;
                let fits = o <= op.end.saturating_add(limits.merge_gap_bytes)
                    && new_end - op.offset <= byte_cap
                    && (op.chunks.len() as u64) < limits.max_chunks_per_wave
                    && op.decompressed.saturating_add(d) <= limits.max_decompressed_bytes_per_wave;
                if overlaps || fits {
                    op.gap += o.saturating_sub(op.end);
                    op.end = new_end;
                    op.decompressed = add(op.decompressed, d, "read op decompressed bytes")?;
                    ordered.push(c);
                    op.chunks.end = ordered.len();
                    continue;
                }
            }
            ops.push(OpBuild {
                file: f,
                offset: o,
                end: e,
                decompressed: d,
                gap: 0,
                chunks: ordered.len()..ordered.len() + 1,
            });
            ordered.push(c);
        }
        per_file.push(first_op..ops.len());
    }
    Ok(Coalesced { ops, per_file, chunks: ordered })
}

/// Interleaves the files' reads round-robin, orders the chunks by read, packs waves and
/// counts.
fn assemble(
    mut walk: Walk,
    order: Vec<usize>,
    coalesced: Coalesced,
    limits: &PlanLimits,
    element: Option<DataType>,
) -> Result<BatchPlan> {
    // Output file numbering: files with reads, in canonical order.
    let mut file_out = vec![usize::MAX; walk.files.len()];
    let mut files = Vec::new();
    let Coalesced { ops, per_file, chunks: ordered } = coalesced;
    for (&f, ops) in order.iter().zip(&per_file) {
        if !ops.is_empty() {
            file_out[f] = files.len();
            let fb = &mut walk.files[f];
            files.push(FileRef {
                array: fb.array,
                coords: std::mem::take(&mut fb.coords),
                key: fb.key.clone(),
            });
        }
    }

    let mut queues: Vec<Range<usize>> = per_file.into_iter().filter(|r| !r.is_empty()).collect();
    let mut reads = Vec::with_capacity(ops.len());
    let mut chunks = Vec::with_capacity(walk.chunks.len());
    let mut stats = PlanStats {
        voxels_delivered: walk.voxels,
        bytes_delivered: walk.bytes_delivered,
        ..PlanStats::default()
    };
    let mut waves: Vec<Wave> = Vec::new();
    let mut current: Option<Wave> = None;
    while !queues.is_empty() {
        queues.retain_mut(|q| {
            let Some(op) = q.next() else { return false };
            reads.push(op);
            true
        });
    }
    let mut read_ops = Vec::with_capacity(reads.len());
    for (r, op) in reads.into_iter().map(|i| &ops[i]).enumerate() {
        let len = op.end - op.offset;
        let first = chunks.len();
        for &c in &ordered[op.chunks.clone()] {
            let (o, n, d) = walk.range(c);
            let build = &mut walk.chunks[c];
            chunks.push(ChunkPlan {
                array: build.array,
                chunk: std::mem::take(&mut build.chunk),
                source: ChunkSource::Copy {
                    read: r,
                    offset_in_read: o - op.offset,
                    compressed_len: n,
                    decompressed_len: d,
                },
                placements: std::mem::take(&mut build.placements),
            });
            stats.compressed_bytes_used = add(stats.compressed_bytes_used, n, "compressed bytes")?;
        }
        let group = first..chunks.len();
        stats.bytes_read = add(stats.bytes_read, len, "bytes read")?;
        stats.gap_bytes = add(stats.gap_bytes, op.gap, "gap bytes")?;
        stats.decompressed_bytes =
            add(stats.decompressed_bytes, op.decompressed, "decompressed bytes")?;

        // Waves: a group is never split (lesson 8: split groups re-fired their read).
        let n_chunks = group.len() as u64;
        for (knob, needed, limit) in [
            ("max_staging_bytes_per_wave", len, limits.max_staging_bytes_per_wave),
            ("max_chunks_per_wave", n_chunks, limits.max_chunks_per_wave),
            (
                "max_decompressed_bytes_per_wave",
                op.decompressed,
                limits.max_decompressed_bytes_per_wave,
            ),
        ] {
            if needed > limit {
                return Err(Error::Budget { knob, needed, limit });
            }
        }
        if let Some(w) = &current {
            let fits = w.staging_bytes.saturating_add(len) <= limits.max_staging_bytes_per_wave
                && (w.chunks.len() as u64).saturating_add(n_chunks) <= limits.max_chunks_per_wave
                && w.decompressed_bytes.saturating_add(op.decompressed)
                    <= limits.max_decompressed_bytes_per_wave;
            if !fits {
                waves.extend(current.take());
            }
        }
        let w = current.get_or_insert(Wave {
            reads: r..r,
            chunks: first..first,
            staging_bytes: 0,
            decompressed_bytes: 0,
        });
        w.reads.end = r + 1;
        w.chunks.end = group.end;
        w.staging_bytes += len;
        w.decompressed_bytes += op.decompressed;

        read_ops.push(ReadOp { file: file_out[op.file], offset: op.offset, len, chunks: group });
    }
    waves.extend(current);
    stats.copy_chunks = chunks.len() as u64;

    // Cache hits: after the copies, in canonical (array, chunk) order.
    let cached_start = chunks.len();
    for c in canonical(&walk, |s| matches!(s, Stored::Cached { .. })) {
        let build = &mut walk.chunks[c];
        let Stored::Cached { hit, decompressed } = build.stored else { continue };
        chunks.push(ChunkPlan {
            array: build.array,
            chunk: std::mem::take(&mut build.chunk),
            source: ChunkSource::Cached { hit, decompressed_len: decompressed },
            placements: std::mem::take(&mut build.placements),
        });
        stats.cached_bytes = add(stats.cached_bytes, decompressed, "cached bytes")?;
    }
    stats.cached_chunks = (chunks.len() - cached_start) as u64;

    // Fills: after the cache hits, in canonical (array, chunk) order.
    let fills_start = chunks.len();
    for c in canonical(&walk, |s| matches!(s, Stored::Fill(_))) {
        let build = &mut walk.chunks[c];
        let Stored::Fill(value) = build.stored else { continue };
        chunks.push(ChunkPlan {
            array: build.array,
            chunk: std::mem::take(&mut build.chunk),
            source: ChunkSource::Fill { value },
            placements: std::mem::take(&mut build.placements),
        });
    }
    stats.fill_chunks = (chunks.len() - fills_start) as u64;
    stats.placements = chunks.iter().map(|c| c.placements.len() as u64).sum();

    Ok(BatchPlan {
        element,
        files,
        reads: read_ops,
        cached: cached_start..fills_start,
        fills: fills_start..chunks.len(),
        chunks,
        waves,
        stats,
    })
}

/// The chunk builds whose storage matches `which`, in canonical (array, chunk) order.
fn canonical(walk: &Walk, which: impl Fn(&Stored) -> bool) -> Vec<usize> {
    let mut ids: Vec<usize> =
        (0..walk.chunks.len()).filter(|&c| which(&walk.chunks[c].stored)).collect();
    ids.sort_unstable_by(|&a, &b| {
        let (ca, cb) = (&walk.chunks[a], &walk.chunks[b]);
        (ca.array, &ca.chunk).cmp(&(cb.array, &cb.chunk))
    });
    ids
}
