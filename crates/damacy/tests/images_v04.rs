//! OME-NGFF 0.4 images end to end; their levels are zarr v2 arrays (`.zarray`). The 0.4
//! tests that read no level array are in `images.rs`.

use loopback::{BUCKET, S3Server};

use crate::images::{every_level_crop_through, listing_matches_the_metadata_written, ngff_dir};
use crate::object_stores::s3_options;

#[test]
fn every_0_4_level_crop_equals_the_writers_values() {
    let checked =
        every_level_crop_through("0.4", &ngff_dir().display().to_string(), &Default::default());
    assert_eq!(checked, 18);
}

#[test]
fn image_open_lists_what_ome_zarr_py_wrote_in_0_4() {
    listing_matches_the_metadata_written("0.4");
}

#[test]
fn a_0_4_image_reads_through_s3() {
    let server = S3Server::serve(&ngff_dir()).unwrap();
    let os = s3_options(&server);
    assert_eq!(every_level_crop_through("0.4", &format!("s3://{BUCKET}"), &os), 18);
}
