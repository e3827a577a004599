//! Box geometry: a sample box ∩ an array → the shards it touches → the inner chunks it
//! touches, each with its intersection in chunk, shard and sample coordinates.
//!
//! The grid is the regular chunk grid of the core spec; with `sharding_indexed` the outer
//! grid is the shard grid and each shard is tiled by inner chunks in C order (sharding
//! codec spec §"Binary shard format"). Edge chunks and shards are stored full size, so a
//! chunk's own box is always `chunk_shape`, even where it overhangs the array.

use crate::codec::ArrayToBytes;
use crate::dims::Dims;
use crate::error::{Error, Result};
use crate::metadata::ArrayMetadata;

pub use crate::metadata::MAX_RANK;

/// A half-open box: `lo[i] <= x < hi[i]` on every axis. The corners are [`Dims`]: inline
/// up to eight axes, so a box costs no allocation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Aabb {
    pub lo: Dims,
    pub hi: Dims,
}

impl Aabb {
    /// A box from its corners.
    ///
    /// # Errors
    /// `RankMismatch` when the corners differ in rank, `Rank` outside 1..=32, `EmptyBox`
    /// when `hi <= lo` on an axis.
    pub fn new(lo: Vec<u64>, hi: Vec<u64>) -> Result<Self> {
        if lo.len() != hi.len() {
            return Err(Error::RankMismatch { expected: lo.len(), got: hi.len() });
        }
        if lo.is_empty() || lo.len() > MAX_RANK {
            return Err(Error::Rank { rank: lo.len() });
        }
        for (axis, (&l, &h)) in lo.iter().zip(&hi).enumerate() {
            if h <= l {
                return Err(Error::EmptyBox { axis, lo: l, hi: h });
            }
        }
        Ok(Self { lo: lo.into(), hi: hi.into() })
    }

    /// The box `[0, shape)`.
    ///
    /// # Errors
    /// As [`Aabb::new`].
    pub fn from_shape(shape: &[u64]) -> Result<Self> {
        Self::new(vec![0; shape.len()], shape.to_vec())
    }

    pub fn rank(&self) -> usize {
        self.lo.len()
    }

    /// Extent per axis.
    pub fn shape(&self) -> Dims {
        self.lo.iter().zip(&self.hi).map(|(l, h)| h - l).collect()
    }

    /// Number of elements.
    ///
    /// # Errors
    /// `Overflow` when the product does not fit in `u64`.
    pub fn num_elements(&self) -> Result<u64> {
        self.lo
            .iter()
            .zip(&self.hi)
            .try_fold(1u64, |acc, (l, h)| acc.checked_mul(h - l))
            .ok_or(Error::Overflow { what: "box element count" })
    }
}

/// The grid geometry of one array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArrayGeometry {
    /// Array shape.
    pub shape: Vec<u64>,
    /// Outer grid chunk shape: the shard shape when sharded, else the chunk shape.
    pub shard_shape: Vec<u64>,
    /// Inner chunk shape; equal to `shard_shape` when the array is not sharded.
    pub chunk_shape: Vec<u64>,
    /// Whether the outer chunks are shards (`sharding_indexed`).
    pub sharded: bool,
}

/// One shard (or, unsharded, one chunk) touched by a box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardHit {
    /// Coordinates in the outer grid (use with the chunk key encoding for the key).
    pub shard: Vec<u64>,
    /// The inner chunks touched, in C order of their position within the shard.
    pub chunks: Vec<ChunkHit>,
}

/// One inner chunk touched by a box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkHit {
    /// Coordinates in the global inner-chunk grid.
    pub chunk: Vec<u64>,
    /// Coordinates within the shard's chunk grid.
    pub inner: Vec<u64>,
    /// C-order index within the shard: the shard index entry to read (0 when unsharded).
    pub index_in_shard: u64,
    /// The intersection in the chunk's own coordinates.
    pub in_chunk: Aabb,
    /// The intersection in the shard's coordinates.
    pub in_shard: Aabb,
    /// The intersection in the sample's coordinates (relative to the box's `lo`).
    pub in_sample: Aabb,
}

impl ArrayGeometry {
    /// The geometry of an array from its metadata.
    ///
    /// # Errors
    /// `Rank` for rank outside 1..=32; `InvalidField` when a chunk extent is zero, the
    /// ranks disagree, or the shard shape is not a multiple of the inner chunk shape.
    pub fn new(meta: &ArrayMetadata) -> Result<Self> {
        let (chunk_shape, sharded) = match &meta.codecs.array_to_bytes {
            ArrayToBytes::Sharding(s) => (s.chunk_shape.clone(), true),
            ArrayToBytes::Bytes { .. } => (meta.chunk_shape.clone(), false),
        };
        Self::from_shapes(meta.shape.clone(), meta.chunk_shape.clone(), chunk_shape, sharded)
    }

    /// The geometry from explicit shapes (see the fields' docs).
    ///
    /// # Errors
    /// As [`ArrayGeometry::new`].
    pub fn from_shapes(
        shape: Vec<u64>,
        shard_shape: Vec<u64>,
        chunk_shape: Vec<u64>,
        sharded: bool,
    ) -> Result<Self> {
        let rank = shape.len();
        if rank == 0 || rank > MAX_RANK {
            return Err(Error::Rank { rank });
        }
        if shard_shape.len() != rank || chunk_shape.len() != rank {
            return Err(Error::InvalidField {
                field: "chunk_grid.configuration.chunk_shape",
                reason: format!(
                    "rank {} (inner {}) differs from the array's rank {rank}",
                    shard_shape.len(),
                    chunk_shape.len()
                ),
            });
        }
        for (axis, (&s, &c)) in shard_shape.iter().zip(&chunk_shape).enumerate() {
            if s == 0 || c == 0 {
                return Err(Error::InvalidField {
                    field: "chunk_shape",
                    reason: format!("extent 0 on axis {axis}"),
                });
            }
            if s % c != 0 {
                return Err(Error::InvalidField {
                    field: "sharding_indexed.chunk_shape",
                    reason: format!(
                        "shard extent {s} on axis {axis} is not a multiple of the inner chunk extent {c}"
                    ),
                });
            }
        }
        // The shard index has one entry per inner chunk and a chunk is decoded whole:
        // both counts must be representable (crafted metadata can claim 2^120 chunks).
        let per_shard =
            shard_shape.iter().zip(&chunk_shape).try_fold(1u64, |n, (s, c)| n.checked_mul(s / c));
        let chunk_elems = chunk_shape.iter().try_fold(1u64, |n, &c| n.checked_mul(c));
        if per_shard.is_none() || chunk_elems.is_none() {
            return Err(Error::Overflow { what: "chunks per shard or elements per chunk" });
        }
        if !sharded && shard_shape != chunk_shape {
            return Err(Error::InvalidField {
                field: "chunk_shape",
                reason: "an unsharded array's inner chunk shape must equal its chunk shape".into(),
            });
        }
        Ok(Self { shape, shard_shape, chunk_shape, sharded })
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Inner chunks per shard along each axis.
    pub fn chunks_per_shard(&self) -> Vec<u64> {
        self.shard_shape.iter().zip(&self.chunk_shape).map(|(s, c)| s / c).collect()
    }

    /// Number of inner chunks per shard (the shard index's entry count).
    ///
    /// # Errors
    /// `Overflow` when the product does not fit in `u64`.
    pub fn num_chunks_per_shard(&self) -> Result<u64> {
        // Without `chunks_per_shard`'s vector: planners ask once per sample.
        self.shard_shape
            .iter()
            .zip(&self.chunk_shape)
            .try_fold(1u64, |acc, (s, c)| acc.checked_mul(s / c))
            .ok_or(Error::Overflow { what: "chunks per shard" })
    }

    /// Shards along each axis (the last may be ragged).
    pub fn shard_grid_shape(&self) -> Vec<u64> {
        self.shape.iter().zip(&self.shard_shape).map(|(a, s)| a.div_ceil(*s)).collect()
    }

    /// Elements in one inner chunk.
    ///
    /// # Errors
    /// `Overflow` when the product does not fit in `u64`.
    pub fn chunk_num_elements(&self) -> Result<u64> {
        self.chunk_shape
            .iter()
            .try_fold(1u64, |acc, &n| acc.checked_mul(n))
            .ok_or(Error::Overflow { what: "chunk element count" })
    }

    /// Checks that `aabb` has the array's rank and lies inside it.
    ///
    /// # Errors
    /// `RankMismatch` or `OutOfBounds` naming the axis.
    pub fn check_box(&self, aabb: &Aabb) -> Result<()> {
        if aabb.rank() != self.rank() {
            return Err(Error::RankMismatch { expected: self.rank(), got: aabb.rank() });
        }
        for axis in 0..self.rank() {
            if aabb.hi[axis] > self.shape[axis] || aabb.lo[axis] >= aabb.hi[axis] {
                return Err(Error::OutOfBounds {
                    axis,
                    lo: aabb.lo[axis],
                    hi: aabb.hi[axis],
                    extent: self.shape[axis],
                });
            }
        }
        Ok(())
    }

    /// The shards and inner chunks that `aabb` touches, shards in C order of their grid
    /// coordinates and chunks in C order within each shard. The `in_sample` boxes of all
    /// chunks tile `[0, aabb.shape())` exactly once.
    ///
    /// This allocates a handful of vectors per chunk; hot loops should reuse an
    /// [`Intersection`] through [`ArrayGeometry::intersect_into`], which computes the same
    /// hits.
    ///
    /// # Errors
    /// As [`ArrayGeometry::check_box`], and `Overflow` for grids too large to index.
    pub fn intersect(&self, aabb: &Aabb) -> Result<Vec<ShardHit>> {
        let mut out = Intersection::new();
        self.intersect_into(aabb, &mut out)?;
        Ok(out.to_hits())
    }

    /// The hits of [`ArrayGeometry::intersect`], written into `out`'s reused buffers
    /// instead of a vector per chunk: once `out` has grown to a batch's largest box, this
    /// allocates nothing.
    ///
    /// `out` is cleared first; after an error it is empty.
    ///
    /// # Errors
    /// As [`ArrayGeometry::intersect`].
    pub fn intersect_into(&self, aabb: &Aabb, out: &mut Intersection) -> Result<()> {
        out.clear();
        let result = self.fill_intersection(aabb, out);
        if result.is_err() {
            out.clear();
        }
        result
    }

    fn fill_intersection(&self, aabb: &Aabb, out: &mut Intersection) -> Result<()> {
        self.check_box(aabb)?;
        let rank = self.rank();
        // Axis arrays of at most MAX_RANK entries (checked by `check_box` through the
        // box's rank, which equals the shape's): stack scratch instead of vectors.
        if rank > MAX_RANK || self.shard_shape.len() != rank || self.chunk_shape.len() != rank {
            return Err(Error::Rank { rank });
        }
        out.rank = rank;
        let (lo, hi) = (&aabb.lo[..rank], &aabb.hi[..rank]);
        let (shard_shape, chunk_shape) = (&self.shard_shape[..rank], &self.chunk_shape[..rank]);
        let mut per_shard = [0u64; MAX_RANK];
        let mut shard_lo = [0u64; MAX_RANK];
        let mut shard_hi = [0u64; MAX_RANK];
        for a in 0..rank {
            if shard_shape[a] == 0 || chunk_shape[a] == 0 {
                return Err(Error::InvalidField {
                    field: "chunk_shape",
                    reason: format!("extent 0 on axis {a}"),
                });
            }
            per_shard[a] = shard_shape[a] / chunk_shape[a];
            // The shard range touched on each axis, inclusive.
            shard_lo[a] = lo[a] / shard_shape[a];
            shard_hi[a] = (hi[a] - 1) / shard_shape[a];
        }
        let (shard_lo, shard_hi) = (&shard_lo[..rank], &shard_hi[..rank]);
        let per_shard = &per_shard[..rank];
        // C-order strides of the shard's chunk grid, when shards are whole multiples of
        // chunks and their chunk count fits in u64 (as `from_shapes` ensures): then every
        // inner coordinate is below its axis's count and every index within a shard fits.
        let mut stride_buf = [0u64; MAX_RANK];
        let mut count = Some(1u64);
        for a in (0..rank).rev() {
            stride_buf[a] = count.unwrap_or(0);
            count = count
                .filter(|_| shard_shape[a] % chunk_shape[a] == 0)
                .and_then(|n| n.checked_mul(per_shard[a]));
        }
        let strides = count.map(|_| &stride_buf[..rank]);

        let mut shard = [0u64; MAX_RANK];
        let shard = &mut shard[..rank];
        shard.copy_from_slice(shard_lo);
        let mut origin = [0u64; MAX_RANK];
        let mut chunk_lo = [0u64; MAX_RANK];
        let mut chunk_hi = [0u64; MAX_RANK];
        let mut inner = [0u64; MAX_RANK];
        loop {
            // Shard origin and the box clipped to it, in array coordinates.
            for a in 0..rank {
                origin[a] = shard[a]
                    .checked_mul(shard_shape[a])
                    .ok_or(Error::Overflow { what: "shard origin" })?;
                chunk_lo[a] = (lo[a].max(origin[a]) - origin[a]) / chunk_shape[a];
                let end = hi[a].min(origin[a].saturating_add(shard_shape[a]));
                chunk_hi[a] = (end - 1 - origin[a]) / chunk_shape[a];
            }
            out.shards.extend_from_slice(shard);
            let (chunk_lo, chunk_hi) = (&chunk_lo[..rank], &chunk_hi[..rank]);
            // The shard's hits, reserved at once (a hint only: saturates on absurd grids).
            let count = (0..rank).fold(1usize, |n, a| {
                let along = usize::try_from(chunk_hi[a] - chunk_lo[a] + 1).unwrap_or(usize::MAX);
                n.saturating_mul(along)
            });
            out.index_in_shard.reserve(count);
            out.coords.reserve(count.saturating_mul(CHUNK_FIELDS * rank));
            let inner = &mut inner[..rank];
            inner.copy_from_slice(chunk_lo);
            let mut row = [0u64; CHUNK_FIELDS * MAX_RANK];
            let row = &mut row[..CHUNK_FIELDS * rank];
            loop {
                let index_in_shard = match strides {
                    // Below the shard's chunk count, which fits in u64.
                    Some(strides) => (0..rank).map(|a| inner[a] * strides[a]).sum(),
                    // Fields set by hand past `from_shapes`' checks: the chunk count may not
                    // fit, so each visited index is checked as it is formed.
                    None => (0..rank)
                        .try_fold(0u64, |idx, a| {
                            idx.checked_mul(per_shard[a])?.checked_add(inner[a])
                        })
                        .ok_or(Error::Overflow { what: "chunk index within shard" })?,
                };
                out.index_in_shard.push(index_in_shard);
                let (chunk, rest) = row.split_at_mut(rank);
                let (inner_out, rest) = rest.split_at_mut(rank);
                let (chunk_lo_out, rest) = rest.split_at_mut(rank);
                let (chunk_hi_out, rest) = rest.split_at_mut(rank);
                let (shard_lo_out, rest) = rest.split_at_mut(rank);
                let (shard_hi_out, rest) = rest.split_at_mut(rank);
                let (sample_lo_out, sample_hi_out) = rest.split_at_mut(rank);
                for a in 0..rank {
                    // Chunk box in array coordinates (cannot overflow: it lies inside the
                    // shard, whose origin was computed with checks, and shard extents are
                    // multiples of chunk extents).
                    let c_lo = origin[a] + inner[a] * chunk_shape[a];
                    let l = lo[a].max(c_lo);
                    let h = hi[a].min(c_lo.saturating_add(chunk_shape[a]));
                    chunk[a] = shard[a] * per_shard[a] + inner[a];
                    inner_out[a] = inner[a];
                    chunk_lo_out[a] = l - c_lo;
                    chunk_hi_out[a] = h - c_lo;
                    shard_lo_out[a] = l - origin[a];
                    shard_hi_out[a] = h - origin[a];
                    sample_lo_out[a] = l - lo[a];
                    sample_hi_out[a] = h - lo[a];
                }
                out.coords.extend_from_slice(row);
                if !step(inner, chunk_lo, chunk_hi) {
                    break;
                }
            }
            out.shard_ends.push(out.index_in_shard.len());
            if !step(shard, shard_lo, shard_hi) {
                return Ok(());
            }
        }
    }
}

/// Advances `cur` to the next coordinate of the inclusive box `[lo, hi]` in C order;
/// `false` (with `cur` back at `lo`) once every coordinate has been visited.
fn step(cur: &mut [u64], lo: &[u64], hi: &[u64]) -> bool {
    for axis in (0..cur.len()).rev() {
        if cur[axis] < hi[axis] {
            cur[axis] += 1;
            return true;
        }
        cur[axis] = lo[axis];
    }
    false
}

/// Values stored per chunk hit and axis: chunk, inner, and the lo and hi corners of
/// `in_chunk`, `in_shard` and `in_sample`.
const CHUNK_FIELDS: usize = 8;

/// The hits of a box, as [`ArrayGeometry::intersect_into`] writes them: flat buffers that
/// keep their capacity across boxes, read through [`ShardView`] and [`ChunkView`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Intersection {
    rank: usize,
    /// Shard grid coordinates, `rank` values per shard.
    shards: Vec<u64>,
    /// Per shard, one past the index of its last chunk hit.
    shard_ends: Vec<usize>,
    /// Per chunk hit, `CHUNK_FIELDS * rank` values (see `CHUNK_FIELDS`).
    coords: Vec<u64>,
    index_in_shard: Vec<u64>,
}

impl Intersection {
    /// An empty intersection, to be filled by [`ArrayGeometry::intersect_into`].
    pub fn new() -> Self {
        Self::default()
    }

    fn clear(&mut self) {
        self.rank = 0;
        self.shards.clear();
        self.shard_ends.clear();
        self.coords.clear();
        self.index_in_shard.clear();
    }

    /// Rank of the box last intersected (0 when empty).
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of shards touched (the length of `intersect`'s result).
    pub fn num_shards(&self) -> usize {
        self.shard_ends.len()
    }

    /// Number of chunk hits over all shards.
    pub fn num_chunks(&self) -> usize {
        self.index_in_shard.len()
    }

    /// Shard `i`, or `None` past the end.
    pub fn shard(&self, i: usize) -> Option<ShardView<'_>> {
        let end = *self.shard_ends.get(i)?;
        let start = if i == 0 { 0 } else { *self.shard_ends.get(i - 1)? };
        let rank = self.rank;
        let stride = CHUNK_FIELDS * rank;
        Some(ShardView {
            coords: self.shards.get(i * rank..(i + 1) * rank)?,
            rank,
            rows: self.coords.get(start * stride..end * stride)?,
            indexes: self.index_in_shard.get(start..end)?,
        })
    }

    /// The shards touched, in C order of their grid coordinates.
    pub fn shards(&self) -> impl Iterator<Item = ShardView<'_>> + '_ {
        (0..self.num_shards()).filter_map(|i| self.shard(i))
    }

    /// Chunk hit `j` (counted over all shards), or `None` past the end.
    pub fn chunk(&self, j: usize) -> Option<ChunkView<'_>> {
        let rank = self.rank;
        let index_in_shard = *self.index_in_shard.get(j)?;
        let row = self.coords.get(j * CHUNK_FIELDS * rank..(j + 1) * CHUNK_FIELDS * rank)?;
        Some(ChunkView::from_row(row, rank, index_in_shard))
    }

    /// The owned form, exactly what [`ArrayGeometry::intersect`] returns.
    pub fn to_hits(&self) -> Vec<ShardHit> {
        (0..self.num_shards())
            .filter_map(|i| self.shard(i))
            .map(|s| ShardHit {
                shard: s.coords.to_vec(),
                chunks: s.chunks().map(|c| c.to_hit()).collect(),
            })
            .collect()
    }
}

/// One shard of an [`Intersection`].
#[derive(Debug, Clone)]
pub struct ShardView<'a> {
    /// Coordinates in the outer grid.
    pub coords: &'a [u64],
    rank: usize,
    /// The shard's chunk rows (`CHUNK_FIELDS * rank` values each) and their indexes.
    rows: &'a [u64],
    indexes: &'a [u64],
}

impl<'a> ShardView<'a> {
    /// Number of chunk hits in this shard.
    pub fn num_chunks(&self) -> usize {
        self.indexes.len()
    }

    /// The chunk hits of this shard, in C order of their position within it.
    pub fn chunks(&self) -> impl ExactSizeIterator<Item = ChunkView<'a>> + 'a {
        let rank = self.rank;
        // A shard exists only after a successful intersect, whose rank is at least 1; the
        // `max` keeps `chunks_exact` clear of its zero-size panic all the same.
        self.rows
            .chunks_exact((CHUNK_FIELDS * rank).max(1))
            .zip(self.indexes)
            .map(move |(row, &index)| ChunkView::from_row(row, rank, index))
    }
}

/// One chunk hit of an [`Intersection`]: the borrowed form of [`ChunkHit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkView<'a> {
    /// Coordinates in the global inner-chunk grid.
    pub chunk: &'a [u64],
    /// Coordinates within the shard's chunk grid.
    pub inner: &'a [u64],
    /// C-order index within the shard: the shard index entry to read (0 when unsharded).
    pub index_in_shard: u64,
    /// The intersection in the chunk's own coordinates.
    pub in_chunk: BoxView<'a>,
    /// The intersection in the shard's coordinates.
    pub in_shard: BoxView<'a>,
    /// The intersection in the sample's coordinates (relative to the box's `lo`).
    pub in_sample: BoxView<'a>,
}

impl<'a> ChunkView<'a> {
    /// The view of one row of `CHUNK_FIELDS * rank` values.
    fn from_row(row: &'a [u64], rank: usize, index_in_shard: u64) -> Self {
        let (chunk, row) = row.split_at(rank.min(row.len()));
        let (inner, row) = row.split_at(rank.min(row.len()));
        let (chunk_lo, row) = row.split_at(rank.min(row.len()));
        let (chunk_hi, row) = row.split_at(rank.min(row.len()));
        let (shard_lo, row) = row.split_at(rank.min(row.len()));
        let (shard_hi, row) = row.split_at(rank.min(row.len()));
        let (sample_lo, sample_hi) = row.split_at(rank.min(row.len()));
        ChunkView {
            chunk,
            inner,
            index_in_shard,
            in_chunk: BoxView { lo: chunk_lo, hi: chunk_hi },
            in_shard: BoxView { lo: shard_lo, hi: shard_hi },
            in_sample: BoxView { lo: sample_lo, hi: sample_hi },
        }
    }

    /// The owned form.
    pub fn to_hit(&self) -> ChunkHit {
        ChunkHit {
            chunk: self.chunk.to_vec(),
            inner: self.inner.to_vec(),
            index_in_shard: self.index_in_shard,
            in_chunk: self.in_chunk.to_aabb(),
            in_shard: self.in_shard.to_aabb(),
            in_sample: self.in_sample.to_aabb(),
        }
    }
}

/// A borrowed half-open box: the corners of an [`Aabb`] without owning them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxView<'a> {
    pub lo: &'a [u64],
    pub hi: &'a [u64],
}

impl BoxView<'_> {
    /// The owned box (the corners are copied as they are; no allocation up to
    /// [`crate::dims::INLINE_RANK`] axes).
    pub fn to_aabb(&self) -> Aabb {
        Aabb { lo: Dims::from_slice(self.lo), hi: Dims::from_slice(self.hi) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// This box shifted so that `origin` becomes zero (`origin <= lo` on every axis).
    fn relative_to(b: &Aabb, origin: &[u64]) -> Aabb {
        Aabb {
            lo: b.lo.iter().zip(origin).map(|(l, o)| l - o).collect(),
            hi: b.hi.iter().zip(origin).map(|(h, o)| h - o).collect(),
        }
    }

    /// Iterates every coordinate of the inclusive box `[lo, hi]` in C order.
    struct Odometer {
        lo: Vec<u64>,
        hi: Vec<u64>,
        next: Option<Vec<u64>>,
    }

    impl Odometer {
        fn new(lo: &[u64], hi: &[u64]) -> Self {
            let next = lo.iter().zip(hi).all(|(l, h)| l <= h).then(|| lo.to_vec());
            Self { lo: lo.to_vec(), hi: hi.to_vec(), next }
        }
    }

    impl Iterator for Odometer {
        type Item = Vec<u64>;

        fn next(&mut self) -> Option<Vec<u64>> {
            let current = self.next.take()?;
            let mut succ = current.clone();
            for axis in (0..succ.len()).rev() {
                if succ[axis] < self.hi[axis] {
                    succ[axis] += 1;
                    self.next = Some(succ);
                    return Some(current);
                }
                succ[axis] = self.lo[axis];
            }
            Some(current)
        }
    }

    /// The allocating `intersect` as it was before `intersect_into`, kept verbatim as the
    /// reference the flat version must reproduce exactly.
    fn reference_intersect(g: &ArrayGeometry, aabb: &Aabb) -> Result<Vec<ShardHit>> {
        g.check_box(aabb)?;
        let rank = g.rank();
        let per_shard = g.chunks_per_shard();
        let shard_lo: Vec<u64> = (0..rank).map(|a| aabb.lo[a] / g.shard_shape[a]).collect();
        let shard_hi: Vec<u64> = (0..rank).map(|a| (aabb.hi[a] - 1) / g.shard_shape[a]).collect();
        let mut hits = Vec::new();
        for shard in Odometer::new(&shard_lo, &shard_hi) {
            let origin: Vec<u64> = (0..rank)
                .map(|a| shard[a].checked_mul(g.shard_shape[a]))
                .collect::<Option<_>>()
                .ok_or(Error::Overflow { what: "shard origin" })?;
            let chunk_lo: Vec<u64> = (0..rank)
                .map(|a| (aabb.lo[a].max(origin[a]) - origin[a]) / g.chunk_shape[a])
                .collect();
            let chunk_hi: Vec<u64> = (0..rank)
                .map(|a| {
                    let end = aabb.hi[a].min(origin[a].saturating_add(g.shard_shape[a]));
                    (end - 1 - origin[a]) / g.chunk_shape[a]
                })
                .collect();
            let mut chunks = Vec::new();
            for inner in Odometer::new(&chunk_lo, &chunk_hi) {
                let index_in_shard = (0..rank)
                    .try_fold(0u64, |idx, a| idx.checked_mul(per_shard[a])?.checked_add(inner[a]))
                    .ok_or(Error::Overflow { what: "chunk index within shard" })?;
                let c_lo: Vec<u64> =
                    (0..rank).map(|a| origin[a] + inner[a] * g.chunk_shape[a]).collect();
                let lo: Vec<u64> = (0..rank).map(|a| aabb.lo[a].max(c_lo[a])).collect();
                let hi: Vec<u64> = (0..rank)
                    .map(|a| aabb.hi[a].min(c_lo[a].saturating_add(g.chunk_shape[a])))
                    .collect();
                let hit = Aabb { lo: lo.into(), hi: hi.into() };
                let chunk: Vec<u64> = (0..rank)
                    .map(|a| shard[a] * (g.shard_shape[a] / g.chunk_shape[a]) + inner[a])
                    .collect();
                chunks.push(ChunkHit {
                    in_chunk: relative_to(&hit, &c_lo),
                    in_shard: relative_to(&hit, &origin),
                    in_sample: relative_to(&hit, &aabb.lo),
                    chunk,
                    inner,
                    index_in_shard,
                });
            }
            hits.push(ShardHit { shard, chunks });
        }
        Ok(hits)
    }

    fn geom(shape: &[u64], shard: &[u64], chunk: &[u64]) -> ArrayGeometry {
        ArrayGeometry::from_shapes(shape.to_vec(), shard.to_vec(), chunk.to_vec(), shard != chunk)
            .unwrap()
    }

    #[test]
    fn one_chunk_box_in_middle() {
        let g = geom(&[100, 100], &[20, 20], &[10, 10]);
        let b = Aabb::new(vec![12, 31], vec![18, 39]).unwrap();
        let hits = g.intersect(&b).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].shard, vec![0, 1]);
        let c = &hits[0].chunks[0];
        assert_eq!(c.chunk, vec![1, 3]);
        assert_eq!(c.inner, vec![1, 1]);
        assert_eq!(c.index_in_shard, 3);
        assert_eq!(c.in_chunk, Aabb { lo: vec![2, 1].into(), hi: vec![8, 9].into() });
        assert_eq!(c.in_shard, Aabb { lo: vec![12, 11].into(), hi: vec![18, 19].into() });
        assert_eq!(c.in_sample, Aabb { lo: vec![0, 0].into(), hi: vec![6, 8].into() });
    }

    #[test]
    fn box_across_shards_orders_shards_and_chunks_in_c_order() {
        let g = geom(&[40, 40], &[20, 20], &[10, 10]);
        let b = Aabb::new(vec![15, 5], vec![25, 15]).unwrap();
        let hits = g.intersect(&b).unwrap();
        let shards: Vec<_> = hits.iter().map(|h| h.shard.clone()).collect();
        assert_eq!(shards, vec![vec![0, 0], vec![1, 0]]);
        let idx: Vec<Vec<u64>> =
            hits.iter().map(|h| h.chunks.iter().map(|c| c.index_in_shard).collect()).collect();
        assert_eq!(idx, vec![vec![2, 3], vec![0, 1]]);
    }

    #[test]
    fn ragged_edge_chunk_keeps_full_chunk_coordinates() {
        let g = geom(&[25], &[10], &[10]);
        let b = Aabb::new(vec![21], vec![25]).unwrap();
        let hits = g.intersect(&b).unwrap();
        assert_eq!(hits[0].shard, vec![2]);
        assert_eq!(hits[0].chunks[0].in_chunk, Aabb { lo: vec![1].into(), hi: vec![5].into() });
    }

    #[test]
    fn out_of_bounds_and_rank_errors_name_the_axis() {
        let g = geom(&[10, 10], &[5, 5], &[5, 5]);
        let b = Aabb::new(vec![0, 8], vec![5, 11]).unwrap();
        assert_eq!(g.intersect(&b), Err(Error::OutOfBounds { axis: 1, lo: 8, hi: 11, extent: 10 }));
        let b1 = Aabb::new(vec![0], vec![5]).unwrap();
        assert_eq!(g.intersect(&b1), Err(Error::RankMismatch { expected: 2, got: 1 }));
        assert_eq!(Aabb::new(vec![3], vec![3]), Err(Error::EmptyBox { axis: 0, lo: 3, hi: 3 }));
    }

    #[test]
    fn chunk_counts_that_overflow_are_rejected_not_panicked_on() {
        let big = 1u64 << 40;
        let e = ArrayGeometry::from_shapes(vec![big; 3], vec![big; 3], vec![1; 3], true);
        assert!(matches!(e, Err(Error::Overflow { .. })), "{e:?}");
        let e = ArrayGeometry::from_shapes(vec![big; 3], vec![big; 3], vec![big; 3], false);
        assert!(matches!(e, Err(Error::Overflow { .. })), "{e:?}");
    }

    #[test]
    fn shard_not_multiple_of_chunk_is_rejected() {
        let e = ArrayGeometry::from_shapes(vec![10], vec![6], vec![4], true).unwrap_err();
        assert!(matches!(e, Error::InvalidField { field: "sharding_indexed.chunk_shape", .. }));
    }

    fn case() -> impl Strategy<Value = (ArrayGeometry, Aabb)> {
        (1usize..=4)
            .prop_flat_map(|rank| {
                (
                    prop::collection::vec(1u64..=40, rank),
                    prop::collection::vec(1u64..=6, rank),
                    prop::collection::vec(1u64..=3, rank),
                )
            })
            .prop_flat_map(|(shape, chunk, mult)| {
                let shard: Vec<u64> = chunk.iter().zip(&mult).map(|(c, m)| c * m).collect();
                let sharded = mult.iter().any(|&m| m > 1);
                let inner = if sharded { chunk } else { shard.clone() };
                let g = ArrayGeometry::from_shapes(shape.clone(), shard, inner, sharded);
                let bounds: Vec<_> = shape
                    .iter()
                    .map(|&e| (0..e).prop_flat_map(move |lo| (Just(lo), lo + 1..=e)))
                    .collect();
                (Just(g), bounds)
            })
            .prop_filter_map("valid geometry", |(g, b)| {
                let g = match g {
                    Ok(g) => g,
                    Err(_) => return None,
                };
                let (lo, hi) = b.into_iter().unzip();
                Some((g, Aabb::new(lo, hi).ok()?))
            })
    }

    proptest! {
        /// The `in_sample` boxes of all chunk hits tile the sample exactly once, and each
        /// hit's three boxes describe the same voxels.
        #[test]
        fn chunk_hits_tile_the_box_exactly_once((g, b) in case()) {
            let shape = b.shape();
            let n = b.num_elements().unwrap() as usize;
            let mut count = vec![0u8; n];
            let per_shard = g.chunks_per_shard();
            for hit in g.intersect(&b).unwrap() {
                for c in &hit.chunks {
                    prop_assert_eq!(c.in_chunk.shape(), c.in_sample.shape());
                    prop_assert_eq!(c.in_shard.shape(), c.in_sample.shape());
                    for (a, &per) in per_shard.iter().enumerate() {
                        prop_assert!(c.in_chunk.hi[a] <= g.chunk_shape[a]);
                        prop_assert!(c.inner[a] < per);
                        prop_assert_eq!(c.chunk[a] * g.chunk_shape[a] + c.in_chunk.lo[a],
                            b.lo[a] + c.in_sample.lo[a]);
                        prop_assert_eq!(hit.shard[a] * g.shard_shape[a] + c.in_shard.lo[a],
                            b.lo[a] + c.in_sample.lo[a]);
                    }
                    for p in Odometer::new(&c.in_sample.lo,
                        &c.in_sample.hi.iter().map(|h| h - 1).collect::<Vec<_>>()) {
                        let mut lin = 0usize;
                        for a in 0..g.rank() { lin = lin * shape[a] as usize + p[a] as usize; }
                        count[lin] += 1;
                    }
                }
            }
            prop_assert!(count.iter().all(|&c| c == 1));
        }
    }

    /// Every way to read an `Intersection` agrees with the owned hits.
    fn assert_views_match(out: &Intersection, hits: &[ShardHit]) {
        assert_eq!(out.num_shards(), hits.len());
        assert_eq!(out.num_chunks(), hits.iter().map(|h| h.chunks.len()).sum::<usize>());
        assert!(out.shard(hits.len()).is_none());
        assert!(out.chunk(out.num_chunks()).is_none());
        let mut j = 0;
        for (i, (view, hit)) in out.shards().zip(hits).enumerate() {
            assert_eq!(view.coords, &hit.shard[..]);
            assert_eq!(out.shard(i).unwrap().coords, &hit.shard[..]);
            assert_eq!(view.num_chunks(), hit.chunks.len());
            for (c, h) in view.chunks().zip(&hit.chunks) {
                assert_eq!(c.to_hit(), *h);
                assert_eq!(out.chunk(j).unwrap(), c);
                j += 1;
            }
        }
        assert_eq!(j, out.num_chunks());
    }

    #[test]
    fn huge_coordinates_match_the_reference() {
        // Extents near u64::MAX exercise the saturating chunk and shard ends.
        let top = u64::MAX;
        let g = ArrayGeometry::from_shapes(vec![top, 7], vec![1 << 62, 4], vec![1 << 60, 2], true)
            .unwrap();
        let b = Aabb::new(vec![top - (1 << 61) - 3, 1], vec![top, 7]).unwrap();
        let want = reference_intersect(&g, &b).unwrap();
        assert_eq!(want.len(), 2);
        assert_eq!(g.intersect(&b).unwrap(), want);
        let mut out = Intersection::new();
        g.intersect_into(&b, &mut out).unwrap();
        assert_views_match(&out, &want);
    }

    #[test]
    fn hand_built_grid_whose_indexes_overflow_fails_as_the_reference_does() {
        // 2^110 chunks per shard: past `from_shapes`, so only boxes whose indexes fit work.
        let g = ArrayGeometry {
            shape: vec![1 << 40, 1 << 40, 1 << 30],
            shard_shape: vec![1 << 40, 1 << 40, 1 << 30],
            chunk_shape: vec![1, 1, 1],
            sharded: true,
        };
        let fits = Aabb::new(vec![0, 0, 0], vec![1, 2, 3]).unwrap();
        let want = reference_intersect(&g, &fits).unwrap();
        assert_eq!(want[0].chunks.len(), 6);
        assert_eq!(g.intersect(&fits).unwrap(), want);
        let overflows = Aabb::new(vec![1 << 20, 0, 0], vec![(1 << 20) + 1, 1, 1]).unwrap();
        let e = Err(Error::Overflow { what: "chunk index within shard" });
        assert_eq!(reference_intersect(&g, &overflows), e);
        assert_eq!(g.intersect(&overflows), e);
    }

    #[test]
    fn a_failed_intersect_into_leaves_it_empty() {
        let g = geom(&[10, 10], &[5, 5], &[5, 5]);
        let mut out = Intersection::new();
        g.intersect_into(&Aabb::new(vec![0, 0], vec![10, 10]).unwrap(), &mut out).unwrap();
        assert_eq!((out.rank(), out.num_shards(), out.num_chunks()), (2, 4, 4));
        let bad = Aabb::new(vec![0, 8], vec![5, 11]).unwrap();
        let e = g.intersect_into(&bad, &mut out);
        assert_eq!(e, Err(Error::OutOfBounds { axis: 1, lo: 8, hi: 11, extent: 10 }));
        assert_eq!((out.rank(), out.num_shards(), out.num_chunks()), (0, 0, 0));
        assert!(out.shard(0).is_none() && out.chunk(0).is_none());
    }

    /// A geometry and a box that may stick out of the array (or have another rank).
    fn loose_case() -> impl Strategy<Value = (ArrayGeometry, Aabb)> {
        (case(), 1usize..=5, any::<bool>()).prop_flat_map(|((g, _), rank, same_rank)| {
            let rank = if same_rank { g.rank() } else { rank };
            let bounds: Vec<_> = (0..rank)
                .map(|_| (0u64..50).prop_flat_map(|lo| (Just(lo), lo + 1..=lo + 50)))
                .collect();
            (Just(g), bounds).prop_map(|(g, b)| {
                let (lo, hi) = b.into_iter().unzip();
                (g, Aabb::new(lo, hi).unwrap())
            })
        })
    }

    proptest! {
        /// `intersect` and `intersect_into` (into a buffer last used for another box)
        /// give exactly what the allocating reference gives, hit for hit.
        #[test]
        fn flat_intersection_equals_the_reference((g, b) in case(), (g2, b2) in case()) {
            let want = reference_intersect(&g, &b).unwrap();
            prop_assert_eq!(&g.intersect(&b).unwrap(), &want);
            let mut out = Intersection::new();
            g2.intersect_into(&b2, &mut out).unwrap();
            g.intersect_into(&b, &mut out).unwrap();
            prop_assert_eq!(out.rank(), g.rank());
            prop_assert_eq!(&out.to_hits(), &want);
            assert_views_match(&out, &want);
        }

        /// Geometries set field by field, past `from_shapes`' checks (shards that are not
        /// multiples of chunks, unsharded with differing shapes), still match the reference.
        #[test]
        fn hand_built_geometries_match_the_reference(
            (shape, shard, chunk, sharded, b) in (1usize..=3).prop_flat_map(|rank| (
                prop::collection::vec(1u64..=30, rank),
                prop::collection::vec(1u64..=9, rank),
                prop::collection::vec(1u64..=5, rank),
                any::<bool>(),
                prop::collection::vec((0u64..30, 1u64..=30), rank),
            ))
        ) {
            let g = ArrayGeometry { shape, shard_shape: shard, chunk_shape: chunk, sharded };
            let (lo, hi): (Vec<u64>, Vec<u64>) =
                b.iter().map(|&(l, n)| (l, l + n)).unzip();
            let b = Aabb::new(lo, hi).unwrap();
            let want = reference_intersect(&g, &b);
            prop_assert_eq!(g.intersect(&b), want);
        }

        /// Boxes outside the array or of another rank fail with the reference's error.
        #[test]
        fn flat_intersection_fails_as_the_reference_does((g, b) in loose_case()) {
            let want = reference_intersect(&g, &b);
            prop_assert_eq!(g.intersect(&b), want.clone());
            let mut out = Intersection::new();
            let got = g.intersect_into(&b, &mut out).map(|()| out.to_hits());
            prop_assert_eq!(got, want);
        }
    }
}
