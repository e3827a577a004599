//! A deliberately simple reference reader: reads a box of a zarr v3 or v2 array from a
//! directory into a native-endian byte buffer, chunk by chunk, using only the `zarr`
//! crate's public API (metadata, geometry, shard index, `decode_chunk`, chunk keys) and
//! `std::fs`. It is the yardstick the conformance tests hold the crate against, so it
//! favours obviousness over speed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use zarr::odometer::{advance, c_strides};
use zarr::{Aabb, ArrayGeometry, ArrayMetadata, ArrayToBytes, ChunkRepr, ShardIndex, decode_chunk};

/// Byte every output buffer starts as, so elements nobody wrote cannot match a reference.
pub const POISON: u8 = 0xAB;

/// An array opened from a directory holding its `zarr.json` (or `.zarray`).
#[derive(Debug, Clone)]
pub struct ReferenceArray {
    dir: PathBuf,
    /// The parsed metadata.
    pub meta: ArrayMetadata,
    /// The grid geometry derived from it.
    pub geometry: ArrayGeometry,
}

impl ReferenceArray {
    /// Opens the array in `dir`: parses `dir/zarr.json`, or where there is none the v2
    /// `dir/.zarray` with `dir/.zattrs` if present.
    ///
    /// # Errors
    /// I/O errors, and the `zarr` crate's metadata and geometry errors (kept as the
    /// source, so callers can downcast to [`zarr::Error`]).
    pub fn open(dir: &Path) -> Result<Self> {
        let read = |name: &str| {
            let path = dir.join(name);
            read_optional(&path)
        };
        let meta = match read("zarr.json")? {
            Some(bytes) => ArrayMetadata::parse(&bytes)?,
            None => {
                let zarray = read(".zarray")?
                    .with_context(|| format!("{}: neither zarr.json nor .zarray", dir.display()))?;
                ArrayMetadata::parse_v2(&zarray, read(".zattrs")?.as_deref())?
            }
        };
        let geometry = ArrayGeometry::new(&meta)?;
        Ok(Self { dir: dir.to_path_buf(), meta, geometry })
    }

    /// Reads the box `[lo, hi)` into a C-order, native-endian buffer.
    ///
    /// # Errors
    /// Out-of-bounds boxes, I/O errors other than a missing chunk or shard (which reads
    /// as the fill value), and any shard-index or decode error from the crate.
    pub fn read(&self, lo: &[u64], hi: &[u64]) -> Result<Vec<u8>> {
        let aabb = Aabb::new(lo.to_vec(), hi.to_vec())?;
        let esize = self.meta.data_type.size();
        let out_shape = aabb.shape();
        let out_len = usize::try_from(aabb.num_elements()?)?
            .checked_mul(esize)
            .context("output size overflows")?;
        let mut out = vec![POISON; out_len];
        let repr = ChunkRepr {
            shape: self.geometry.chunk_shape.clone(),
            data_type: self.meta.data_type,
            fill_value: self.meta.fill_value,
        };
        let chunk_len = usize::try_from(self.geometry.chunk_num_elements()?)? * esize;
        let hits = self.geometry.intersect(&aabb)?;

        for shard_hit in &hits {
            let key = self.meta.chunk_key_encoding.chunk_key(&shard_hit.shard);
            let object = read_optional(&self.dir.join(&key))?;
            let chunks =
                self.chunks_of_shard(&key, object.as_deref(), shard_hit, &repr, chunk_len)?;
            for (hit, chunk) in shard_hit.chunks.iter().zip(chunks) {
                copy_box(
                    &chunk,
                    &self.geometry.chunk_shape,
                    &hit.in_chunk,
                    &mut out,
                    &out_shape,
                    &hit.in_sample.lo,
                    esize,
                );
            }
        }
        Ok(out)
    }

    /// The decoded inner chunks of one shard (or the one chunk of an unsharded grid
    /// cell), in the order of `shard_hit.chunks`. A missing object or empty index entry
    /// yields a chunk of fill values.
    fn chunks_of_shard(
        &self,
        key: &str,
        object: Option<&[u8]>,
        shard_hit: &zarr::ShardHit,
        repr: &ChunkRepr,
        chunk_len: usize,
    ) -> Result<Vec<Vec<u8>>> {
        let fill_chunk = || {
            let mut c = vec![POISON; chunk_len];
            self.meta.fill_value.fill(&mut c);
            c
        };
        let Some(object) = object else {
            return Ok(shard_hit.chunks.iter().map(|_| fill_chunk()).collect());
        };
        let chain = &self.meta.codecs;
        match &chain.array_to_bytes {
            ArrayToBytes::Sharding(sharding)
                if chain.array_to_array.is_empty() && chain.bytes_to_bytes.is_empty() =>
            {
                // The shard object is the raw shard: read its index, then each chunk.
                let n = self.geometry.num_chunks_per_shard()?;
                let index = ShardIndex::of_shard(sharding, n, object)
                    .with_context(|| format!("shard index of `{key}`"))?;
                shard_hit
                    .chunks
                    .iter()
                    .map(|hit| {
                        let inner = || format!("inner chunk {:?} of shard `{key}`", hit.inner);
                        let Some(stored) =
                            index.chunk_bytes(object, hit.index_in_shard).with_context(inner)?
                        else {
                            return Ok(fill_chunk());
                        };
                        let mut chunk = vec![POISON; chunk_len];
                        decode_chunk(&sharding.codecs, repr, stored, &mut chunk)
                            .with_context(inner)?;
                        Ok(chunk)
                    })
                    .collect()
            }
            ArrayToBytes::Sharding(_) => {
                // Codecs around the sharding codec transform the whole shard, so the
                // index cannot be read in place: decode the shard as one chunk.
                let shard_repr =
                    ChunkRepr { shape: self.geometry.shard_shape.clone(), ..repr.clone() };
                let shard_elems = self.geometry.shard_shape.iter().product::<u64>();
                let esize = self.meta.data_type.size();
                let mut shard = vec![POISON; usize::try_from(shard_elems)? * esize];
                decode_chunk(chain, &shard_repr, object, &mut shard)
                    .with_context(|| format!("whole shard `{key}`"))?;
                let whole = Aabb::from_shape(&self.geometry.chunk_shape)?;
                Ok(shard_hit
                    .chunks
                    .iter()
                    .map(|hit| {
                        // Cut the inner chunk out of the decoded shard.
                        let lo: Vec<u64> = hit
                            .inner
                            .iter()
                            .zip(&self.geometry.chunk_shape)
                            .map(|(i, c)| i * c)
                            .collect();
                        let src = Aabb {
                            hi: lo.iter().zip(&whole.hi).map(|(l, e)| l + e).collect(),
                            lo: lo.into(),
                        };
                        let mut chunk = vec![POISON; chunk_len];
                        copy_box(
                            &shard,
                            &self.geometry.shard_shape,
                            &src,
                            &mut chunk,
                            &self.geometry.chunk_shape,
                            &whole.lo,
                            esize,
                        );
                        chunk
                    })
                    .collect())
            }
            ArrayToBytes::Bytes { .. } => {
                ensure!(shard_hit.chunks.len() == 1, "an unsharded grid cell holds one chunk");
                let mut chunk = vec![POISON; chunk_len];
                decode_chunk(chain, repr, object, &mut chunk)
                    .with_context(|| format!("chunk `{key}`"))?;
                Ok(vec![chunk])
            }
        }
    }
}

/// The bytes of `path`, or `None` when it does not exist (a chunk never written).
fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Copies the box `src_box` of the C-order array `src` (shape `src_shape`) into `dst`
/// (shape `dst_shape`) with its low corner at `dst_lo`. Elements are `esize` bytes.
pub fn copy_box(
    src: &[u8],
    src_shape: &[u64],
    src_box: &Aabb,
    dst: &mut [u8],
    dst_shape: &[u64],
    dst_lo: &[u64],
    esize: usize,
) {
    let rank = src_shape.len();
    let extent = src_box.shape();
    let row = extent[rank - 1] as usize * esize;
    let (ss, ds) = (c_strides(src_shape), c_strides(dst_shape));
    // Walk every row (all axes but the last) of the box in C order.
    let mut pos = vec![0u64; rank];
    loop {
        let s_off: u64 = (0..rank).map(|a| (src_box.lo[a] + pos[a]) * ss[a]).sum();
        let d_off: u64 = (0..rank).map(|a| (dst_lo[a] + pos[a]) * ds[a]).sum();
        let (s, d) = (s_off as usize * esize, d_off as usize * esize);
        dst[d..d + row].copy_from_slice(&src[s..s + row]);
        if !advance(&mut pos[..rank - 1], &extent[..rank - 1]) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_box_places_a_2d_block_at_the_destination_corner() {
        // src is 3x4 of u8 0..12; copy rows 1..3, cols 1..3 to dst 4x4 at (2, 1).
        let src: Vec<u8> = (0..12).collect();
        let b = Aabb::new(vec![1, 1], vec![3, 3]).unwrap();
        let mut dst = vec![POISON; 16];
        copy_box(&src, &[3, 4], &b, &mut dst, &[4, 4], &[2, 1], 1);
        let p = POISON;
        #[rustfmt::skip]
        let want = vec![
            p, p, p, p,
            p, p, p, p,
            p, 5, 6, p,
            p, 9, 10, p,
        ];
        assert_eq!(dst, want);
    }

    #[test]
    fn copy_box_handles_rank_1_and_multi_byte_elements() {
        let src: Vec<u8> = (0..10).collect();
        let b = Aabb::new(vec![1], vec![3]).unwrap();
        let mut dst = vec![0; 6];
        copy_box(&src, &[5], &b, &mut dst, &[3], &[1], 2);
        assert_eq!(dst, vec![0, 0, 2, 3, 4, 5]);
    }

    #[test]
    fn out_of_bounds_and_wrong_rank_crops_are_crate_errors() {
        let dir = crate::manifest::data_dir().join("zarr/zstd_u16");
        let a = ReferenceArray::open(&dir).unwrap();
        let e = a.read(&[0, 0, 0], &[21, 1, 1]).unwrap_err();
        assert_eq!(
            e.downcast_ref::<zarr::Error>(),
            Some(&zarr::Error::OutOfBounds { axis: 0, lo: 0, hi: 21, extent: 20 })
        );
        let e = a.read(&[0, 0], &[1, 1]).unwrap_err();
        assert_eq!(
            e.downcast_ref::<zarr::Error>(),
            Some(&zarr::Error::RankMismatch { expected: 3, got: 2 })
        );
    }
}
