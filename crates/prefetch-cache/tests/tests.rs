//! Integration tests of the fetchers and the prefetcher over real files in a tempdir.

mod fetchers;
mod fixtures;
mod images;
// Needs zarr v2 arrays (issue 17's other half): passes once that work is merged.
mod ngff_v04;
mod prefetcher;
