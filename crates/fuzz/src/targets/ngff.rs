//! Target `ngff`: [`zarr::ngff`] on the bytes of an image group's metadata, read both as a
//! 0.4 `.zattrs` and as a 0.5 `zarr.json`, and as a `labels` group of either version
//! (OME-NGFF 0.4 and 0.5 §"multiscales metadata", §"labels metadata").
//!
//! Properties: parsing returns `Ok` or `Err` for any bytes; whatever it accepts has 2 to
//! 5 axes, at least one level, and per level a finite, non-zero scale and a finite
//! translation as long as the axes; and the first voxels of every level map to a physical
//! box that maps back to exactly those voxels.

use zarr::ngff::{self, ImageMetadata};

/// Parses `data` every way and checks what is accepted.
///
/// # Panics
/// When a property fails (that is the finding).
pub fn run_one(data: &[u8]) {
    for meta in [ImageMetadata::from_zattrs(data), ImageMetadata::from_group_json(data)]
        .into_iter()
        .flatten()
    {
        check(&meta);
    }
    for labels in
        [ngff::labels_from_zattrs(data), ngff::labels_from_group_json(data)].into_iter().flatten()
    {
        assert!(labels.iter().all(|l| !l.is_empty() && !l.starts_with('/')), "{labels:?}");
    }
}

fn check(meta: &ImageMetadata) {
    assert!(!meta.multiscales.is_empty(), "accepted metadata without multiscales");
    for ms in &meta.multiscales {
        let rank = ms.axes.len();
        assert!((2..=5).contains(&rank), "accepted {rank} axes");
        assert!(!ms.datasets.is_empty(), "accepted a multiscale without levels");
        for d in &ms.datasets {
            let t = &d.level_transform;
            assert_eq!((t.scale.len(), t.translation.len()), (rank, rank), "{}", d.path);
            assert!(t.scale.iter().all(|s| s.is_finite() && *s != 0.0), "{:?}", t.scale);
            assert!(t.translation.iter().all(|x| x.is_finite()), "{:?}", t.translation);
            assert!(!d.path.is_empty() && !d.path.starts_with('/'), "{}", d.path);
            // The first voxel of every axis round-trips through physical coordinates, or
            // is refused as out of range (extreme scales), never mapped elsewhere.
            let (lo, hi) = (vec![0u64; rank], vec![1u64; rank]);
            let p = t.physical_box(&lo, &hi).expect("rank matches");
            if let Ok(v) = t.voxel_box(&p.lo, &p.hi) {
                assert_eq!((v.lo, v.hi), (vec![0i64; rank], vec![1i64; rank]), "{:?}", t);
            }
        }
    }
}
