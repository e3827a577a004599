//! Integration tests of the fetchers and the prefetcher over real files in a tempdir.

mod fetchers;
mod fixtures;
mod prefetcher;
