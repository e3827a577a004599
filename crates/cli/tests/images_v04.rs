//! `damacy read` and `inspect` on OME-NGFF 0.4 images, whose levels are zarr v2 arrays.

use crate::images::{inspect_lists_the_metadata_written, read_every_level};

#[test]
fn read_writes_each_level_of_a_0_4_image() {
    read_every_level("0.4", "image3d");
}

#[test]
fn inspect_lists_a_0_4_image() {
    inspect_lists_the_metadata_written("0.4", "image5d");
}
