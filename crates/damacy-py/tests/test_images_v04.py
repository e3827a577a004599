"""OME-NGFF 0.4 images from Python. Their levels are zarr v2 arrays (`.zarray`)."""

from test_images import check_every_level_crop, check_listing


def test_every_0_4_level_crop_equals_the_writers_values():
    check_every_level_crop("0.4")


def test_image_lists_what_ome_zarr_py_wrote_in_0_4():
    check_listing("0.4")
