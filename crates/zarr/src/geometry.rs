//! Box geometry: a sample box ∩ an array → the shards it touches → the inner chunks it
//! touches, each with its intersection in chunk, shard and sample coordinates.
//!
//! The grid is the regular chunk grid of the core spec; with `sharding_indexed` the outer
//! grid is the shard grid and each shard is tiled by inner chunks in C order (sharding
//! codec spec §"Binary shard format"). Edge chunks and shards are stored full size, so a
//! chunk's own box is always `chunk_shape`, even where it overhangs the array.

use crate::codec::ArrayToBytes;
use crate::error::{Error, Result};
use crate::metadata::ArrayMetadata;

/// Maximum rank the crate accepts.
pub const MAX_RANK: usize = 32;

/// A half-open box: `lo[i] <= x < hi[i]` on every axis.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Aabb {
    pub lo: Vec<u64>,
    pub hi: Vec<u64>,
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
        Ok(Self { lo, hi })
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
    pub fn shape(&self) -> Vec<u64> {
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

    /// This box shifted so that `origin` becomes zero (`origin <= lo` on every axis).
    fn relative_to(&self, origin: &[u64]) -> Aabb {
        Aabb {
            lo: self.lo.iter().zip(origin).map(|(l, o)| l - o).collect(),
            hi: self.hi.iter().zip(origin).map(|(h, o)| h - o).collect(),
        }
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
        self.chunks_per_shard()
            .iter()
            .try_fold(1u64, |acc, &n| acc.checked_mul(n))
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
    /// # Errors
    /// As [`ArrayGeometry::check_box`], and `Overflow` for grids too large to index.
    pub fn intersect(&self, aabb: &Aabb) -> Result<Vec<ShardHit>> {
        self.check_box(aabb)?;
        let rank = self.rank();
        let per_shard = self.chunks_per_shard();
        // The shard range touched on each axis, inclusive.
        let shard_lo: Vec<u64> = (0..rank).map(|a| aabb.lo[a] / self.shard_shape[a]).collect();
        let shard_hi: Vec<u64> =
            (0..rank).map(|a| (aabb.hi[a] - 1) / self.shard_shape[a]).collect();

        let mut hits = Vec::new();
        for shard in Odometer::new(&shard_lo, &shard_hi) {
            // Shard origin and the box clipped to it, in array coordinates.
            let origin: Vec<u64> = (0..rank)
                .map(|a| shard[a].checked_mul(self.shard_shape[a]))
                .collect::<Option<_>>()
                .ok_or(Error::Overflow { what: "shard origin" })?;
            let chunk_lo: Vec<u64> = (0..rank)
                .map(|a| (aabb.lo[a].max(origin[a]) - origin[a]) / self.chunk_shape[a])
                .collect();
            let chunk_hi: Vec<u64> = (0..rank)
                .map(|a| {
                    let end = aabb.hi[a].min(origin[a].saturating_add(self.shard_shape[a]));
                    (end - 1 - origin[a]) / self.chunk_shape[a]
                })
                .collect();
            let mut chunks = Vec::new();
            for inner in Odometer::new(&chunk_lo, &chunk_hi) {
                // Below the shard's chunk count, which `from_shapes` checked fits in u64;
                // checked all the same, as geometry is built from untrusted metadata.
                let index_in_shard = (0..rank)
                    .try_fold(0u64, |idx, a| idx.checked_mul(per_shard[a])?.checked_add(inner[a]))
                    .ok_or(Error::Overflow { what: "chunk index within shard" })?;
                // Chunk box in array coordinates (cannot overflow: it lies inside the
                // shard, whose origin was computed with checks, and shard extents are
                // multiples of chunk extents).
                let c_lo: Vec<u64> =
                    (0..rank).map(|a| origin[a] + inner[a] * self.chunk_shape[a]).collect();
                let lo: Vec<u64> = (0..rank).map(|a| aabb.lo[a].max(c_lo[a])).collect();
                let hi: Vec<u64> = (0..rank)
                    .map(|a| aabb.hi[a].min(c_lo[a].saturating_add(self.chunk_shape[a])))
                    .collect();
                let hit = Aabb { lo, hi };
                let chunk: Vec<u64> = (0..rank)
                    .map(|a| shard[a] * (self.shard_shape[a] / self.chunk_shape[a]) + inner[a])
                    .collect();
                chunks.push(ChunkHit {
                    in_chunk: hit.relative_to(&c_lo),
                    in_shard: hit.relative_to(&origin),
                    in_sample: hit.relative_to(&aabb.lo),
                    chunk,
                    inner,
                    index_in_shard,
                });
            }
            hits.push(ShardHit { shard, chunks });
        }
        Ok(hits)
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
        assert_eq!(c.in_chunk, Aabb { lo: vec![2, 1], hi: vec![8, 9] });
        assert_eq!(c.in_shard, Aabb { lo: vec![12, 11], hi: vec![18, 19] });
        assert_eq!(c.in_sample, Aabb { lo: vec![0, 0], hi: vec![6, 8] });
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
        assert_eq!(hits[0].chunks[0].in_chunk, Aabb { lo: vec![1], hi: vec![5] });
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
}
