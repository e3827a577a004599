//! The zarr format, v3 and v2: array metadata, codec chains, shard indexes, blosc frames,
//! chunk decoding and box geometry.
//!
//! This crate is pure: it does no I/O, starts no threads and contains no `unsafe`. Every
//! parser returns a `Result` for any input bytes and never panics; arithmetic on sizes and
//! offsets is checked.
//!
//! Map of the crate (spec: <https://zarr-specs.readthedocs.io/en/latest/v3/core/v3.0.html>):
//! - [`dtype`]: [`DataType`] and [`FillValue`] (core spec §"Data types", §"fill_value").
//! - [`metadata`]: [`ArrayMetadata::parse`] for `zarr.json` (core spec §"Array metadata"),
//!   and [`ArrayMetadata::parse_v2`] for a v2 `.zarray` onto the same model
//!   ([`metadata::v2`], v2 spec §"Metadata").
//! - [`codec`]: the codec chain model ([`CodecChain`]) and its validation.
//! - [`shard_index`]: [`ShardIndex`] decode and encode, and where an inner chunk's bytes lie
//!   ([`ShardIndex::chunk_bytes`]) (sharding codec spec §"Binary shard format").
//! - [`blosc`]: blosc1 frame parsing into a [`blosc::BloscLayout`], CPU decode and a small encoder.
//! - [`decode`]: [`decode_chunk`], the whole codec chain for one chunk into a caller buffer.
//! - [`geometry`]: [`Aabb`], [`ArrayGeometry`]: box ∩ array → shards → inner chunks.
//! - [`out_dtype`]: [`OutDtype`], a batch's element type, and the [`Cast`] rule.
//! - [`odometer`]: C-order multi-index iteration ([`odometer::advance`]) and strides.
//! - [`ngff`]: OME-NGFF 0.4/0.5 image metadata ([`ngff::ImageMetadata`]): multiscale levels,
//!   axes, coordinate transformations, labels; physical ↔ voxel boxes.
#![forbid(unsafe_code)]

pub mod blosc;
pub mod codec;
pub mod decode;
pub mod dims;
pub mod dtype;
pub mod error;
pub mod geometry;
pub mod metadata;
pub mod ngff;
pub mod odometer;
pub mod out_dtype;
pub mod shard_index;

pub use codec::{
    ArrayToArray, ArrayToBytes, BytesToBytes, CodecChain, Endian, IndexLocation, ShardingCodec,
};
pub use decode::{ChunkRepr, decode_chunk, encode_chunk};
pub use dims::Dims;
pub use dtype::{DataType, FillValue};
pub use error::{Error, Result};
pub use geometry::{Aabb, ArrayGeometry, ChunkHit, ShardHit};
pub use metadata::{ArrayMetadata, ChunkKeyEncoding, Separator, ZarrFormat};
pub use out_dtype::{Cast, OutDtype};
pub use shard_index::{ChunkLocation, ShardIndex};
