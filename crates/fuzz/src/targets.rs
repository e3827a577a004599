//! The fuzz targets: one module per parser, each with `run_one(data)` that feeds the
//! parser `data` and asserts the parser's properties (a violated property panics, which
//! the runner reports like any other panic).
//!
//! Each target documents its input layout.

pub mod blosc;
pub mod chunk;
pub mod metadata;
pub mod metadata_v2;
pub mod ngff;
pub mod output;
pub mod shard_index;
pub mod zstd_frame;

/// One fuzz target.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The name on the command line and of the corpus folder.
    pub name: &'static str,
    /// What is fuzzed and which properties are checked.
    pub about: &'static str,
    /// Feeds one input to the parser and asserts its properties.
    pub run_one: fn(&[u8]),
    /// The inputs are JSON documents (structural mutations apply).
    pub json: bool,
}

/// Every target, in the order `cargo xtask fuzz` runs them.
pub const ALL: [Target; 7] = [
    Target {
        name: "metadata",
        about: "zarr::ArrayMetadata::parse on zarr.json bytes; what it accepts round-trips",
        run_one: metadata::run_one,
        json: true,
    },
    Target {
        name: "metadata_v2",
        about: "zarr::ArrayMetadata::parse_v2 on zarr v2 .zarray bytes; what it accepts round-trips through to_zarray",
        run_one: metadata_v2::run_one,
        json: true,
    },
    Target {
        name: "shard_index",
        about: "zarr::ShardIndex::decode; accepted entries lie inside the shard, outside the index, and re-encode to the same bytes",
        run_one: shard_index::run_one,
        json: false,
    },
    Target {
        name: "blosc",
        about: "zarr::blosc::layout, streams and decode; a decoded frame fills exactly the size its header declares",
        run_one: blosc::run_one,
        json: false,
    },
    Target {
        name: "chunk",
        about: "zarr::decode_chunk through fixed zstd, gzip, zlib, numcodecs lz4, blosc, transpose and sharding chains (v3 and v2); a decoded chunk writes every output byte",
        run_one: chunk::run_one,
        json: false,
    },
    Target {
        name: "ngff",
        about: "zarr::ngff on OME-NGFF image and labels metadata (0.4 .zattrs, 0.5 zarr.json); accepted levels have valid transforms whose first voxel round-trips",
        run_one: ngff::run_one,
        json: true,
    },
    Target {
        name: "zstd_frame",
        about: "kernels::check_zstd_frame; an accepted frame agrees with libzstd on its size and decodes to exactly the expected bytes",
        run_one: zstd_frame::run_one,
        json: false,
    },
];

/// The target called `name`.
pub fn by_name(name: &str) -> Option<&'static Target> {
    ALL.iter().find(|t| t.name == name)
}
