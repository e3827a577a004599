//! OME-NGFF 0.4 images whose level arrays are zarr v2 (`.zarray`).

use prefetch_cache::image;
use prefetch_cache::{PrefetchConfig, Prefetcher, SampleRequest};
use zarr::ngff::NgffVersion;

use crate::fixtures::fs_store;
use crate::images::ngff_dir;

#[test]
fn open_image_lists_the_levels_of_a_0_4_image() {
    let store = fs_store(&ngff_dir());
    let info = image::open_image(&*store, &"v04/image3d.zarr".into()).unwrap();
    assert_eq!(info.group.meta.version, NgffVersion::V0_4);
    let shapes: Vec<&[u64]> = info.levels.iter().map(|l| &l.meta.shape[..]).collect();
    assert_eq!(shapes, [&[16, 32, 28][..], &[16, 16, 14], &[16, 8, 7]]);
    assert_eq!(info.labels, ["cells"]);
}

#[test]
fn a_0_4_sample_resolves_to_its_v2_level() {
    let p = Prefetcher::new(fs_store(&ngff_dir()), PrefetchConfig::for_batch(1)).unwrap();
    let uri = "v04/image5d.zarr";
    p.push(SampleRequest {
        uri: uri.into(),
        lo: vec![0; 5],
        hi: vec![1, 1, 2, 4, 3],
        level: Some(2),
    })
    .unwrap();
    let out = p.wait_ready(1);
    let resolved = out[0].outcome.as_ref().unwrap();
    assert_eq!(&*resolved.array.uri, "v04/image5d.zarr/s2");
    assert_eq!(resolved.array.meta.shape, [2, 2, 2, 4, 3]);
}
