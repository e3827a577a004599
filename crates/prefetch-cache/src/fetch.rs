//! The three fetchers: array metadata, shard index, chunk layout. Each is a plain
//! synchronous function over a [`Store`]; the prefetcher runs them on its fetch threads,
//! never under a lock.

use crate::sync::StdArc as Arc;

use store::{Span, Store};
use zarr::blosc::{self, BloscLayout, Compressor};
use zarr::{ArrayGeometry, ArrayMetadata, ArrayToBytes, BytesToBytes, IndexLocation, ShardIndex};

use crate::error::Error;

/// An array's parsed metadata and its grid, shared by every sample of the array.
#[derive(Debug, Clone, PartialEq)]
pub struct ArrayInfo {
    pub uri: Arc<str>,
    pub meta: Arc<ArrayMetadata>,
    pub geometry: Arc<ArrayGeometry>,
}

/// What is known about one touched shard (or, for an unsharded array, one chunk object);
/// the same shape as `planner::ShardState`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardState {
    /// A sharded array's shard exists and its index was read.
    Present(Arc<ShardIndex>),
    /// An unsharded array's chunk object exists and is `len` bytes.
    Whole { len: u64 },
    /// The object does not exist (NotFound): every chunk in it is the fill value.
    Absent,
}

/// `uri` joined with `rel` the way the planner joins file keys: no `/` is added when the
/// uri is empty or already ends with one.
pub fn join_key(uri: &str, rel: &str) -> String {
    if uri.is_empty() || uri.ends_with('/') {
        format!("{uri}{rel}")
    } else {
        format!("{uri}/{rel}")
    }
}

fn store_err(key: &str) -> impl FnOnce(store::Error) -> Error + '_ {
    move |source| Error::Store { key: key.to_owned(), source }
}

/// An array's metadata as read from its store, and the key of the document it was parsed
/// from (`…/zarr.json` or `…/.zarray`), so that errors name the right file.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadMetadata {
    pub meta: ArrayMetadata,
    pub key: String,
}

/// Reads and parses an array's metadata: `uri/zarr.json` (zarr v3) or, where there is none,
/// `uri/.zarray` with `uri/.zattrs` if present (zarr v2). The one place that decides
/// which format an array is; the prefetcher and the CLI's `inspect` both read through it.
///
/// # Errors
/// `MetadataNotFound` (naming `zarr.json`) when neither document exists, `Store` for
/// other read failures, `Metadata` naming the document that does not parse (`.zattrs`
/// for invalid attributes).
pub fn read_metadata(store: &dyn Store, uri: &str) -> Result<ReadMetadata, Error> {
    let v3_key = join_key(uri, "zarr.json");
    let bad = |key: &str| {
        let key = key.to_owned();
        move |source| Error::Metadata { uri: Arc::from(uri), key, source }
    };
    if let Some(bytes) = read_optional(store, &v3_key)? {
        let meta = ArrayMetadata::parse(&bytes).map_err(bad(&v3_key))?;
        return Ok(ReadMetadata { meta, key: v3_key });
    }
    let v2_key = join_key(uri, ".zarray");
    let Some(zarray) = read_optional(store, &v2_key)? else {
        return Err(Error::MetadataNotFound { uri: Arc::from(uri), key: v3_key });
    };
    let attrs_key = join_key(uri, ".zattrs");
    let zattrs = read_optional(store, &attrs_key)?;
    match ArrayMetadata::parse_v2(&zarray, zattrs.as_deref()) {
        Ok(meta) => Ok(ReadMetadata { meta, key: v2_key }),
        Err(e @ zarr::Error::InvalidField { field: ".zattrs", .. }) => Err(bad(&attrs_key)(e)),
        Err(e) => Err(bad(&v2_key)(e)),
    }
}

/// The whole object at `key`, or `None` when it does not exist.
fn read_optional(store: &dyn Store, key: &str) -> Result<Option<Vec<u8>>, Error> {
    match store.read_all(key) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(store_err(key)(e)),
    }
}

/// Reads and parses the array's metadata ([`read_metadata`]) and derives its geometry.
///
/// # Errors
/// As [`read_metadata`]; `Metadata` when the grid is invalid; `UnsupportedLayout` for
/// codecs around a sharding codec.
pub fn fetch_metadata(store: &dyn Store, uri: &Arc<str>) -> Result<ArrayInfo, Error> {
    let ReadMetadata { meta, key } = read_metadata(store, uri)?;
    let bad = |source| Error::Metadata { uri: uri.clone(), key: key.clone(), source };
    let geometry = ArrayGeometry::new(&meta).map_err(bad)?;
    if let ArrayToBytes::Sharding(s) = &meta.codecs.array_to_bytes {
        ShardIndex::validate_codecs(s).map_err(bad)?;
        // A transpose before the shard or a compressor over the whole shard means the
        // index cannot be read in place (and the inner grid is in transposed axes): the
        // loader would have to decode whole shards for every crop. Refuse it here, before
        // any shard is fetched, rather than report a misleading index error later.
        if !meta.codecs.array_to_array.is_empty() || !meta.codecs.bytes_to_bytes.is_empty() {
            return Err(Error::UnsupportedLayout {
                uri: uri.clone(),
                what: "codecs around sharding_indexed (put transpose and compressors inside the sharding codec)",
            });
        }
    }
    Ok(ArrayInfo { uri: uri.clone(), meta: Arc::new(meta), geometry: Arc::new(geometry) })
}

/// Reads a shard's index (or, for an unsharded array, learns a chunk's length).
///
/// A shard's index is read with its length in one request, a suffix or prefix range
/// ([`Store::read_span`]), so an object store pays one round trip, not a HEAD and a GET.
///
/// # Errors
/// `EmptyShard` for a zero-byte shard, `ShardTooShort`, `IndexChecksum`,
/// `IndexEntryOutOfRange`, `ShardIndex` for other index defects, `Store` for I/O failures.
pub fn fetch_shard(store: &dyn Store, info: &ArrayInfo, key: &str) -> Result<ShardState, Error> {
    let ArrayToBytes::Sharding(codec) = &info.meta.codecs.array_to_bytes else {
        return Ok(match store.stat(key).map_err(store_err(key))? {
            None => ShardState::Absent,
            Some(len) => ShardState::Whole { len },
        });
    };
    let index_err = |source| match source {
        zarr::Error::ShardTooShort { shard_len, index_len } => {
            Error::ShardTooShort { key: key.to_owned(), shard_len, index_len }
        }
        zarr::Error::IndexChecksum { stored, computed } => {
            Error::IndexChecksum { key: key.to_owned(), stored, computed }
        }
        zarr::Error::IndexEntryOutOfRange { entry, offset, nbytes, shard_len } => {
            Error::IndexEntryOutOfRange { key: key.to_owned(), entry, offset, nbytes, shard_len }
        }
        source => Error::ShardIndex { key: key.to_owned(), source },
    };
    let n = info.geometry.num_chunks_per_shard().map_err(index_err)?;
    let index_len = ShardIndex::encoded_len(codec, n).map_err(index_err)?;
    let Ok(want) = usize::try_from(index_len) else {
        return Err(index_err(zarr::Error::Overflow { what: "shard index length" }));
    };
    let span = match codec.index_location {
        IndexLocation::Start => Span::Head(want),
        IndexLocation::End => Span::Tail(want),
    };
    let read = match store.read_span(key, span) {
        Ok(Some(read)) => read,
        Ok(None) => return Ok(ShardState::Absent),
        // The shard shrank between the length and the bytes: report it as truncated.
        Err(store::Error::ShortRead { got, .. }) => {
            return Err(Error::ShardTooShort {
                key: key.to_owned(),
                shard_len: got as u64,
                index_len,
            });
        }
        Err(e) => return Err(store_err(key)(e)),
    };
    let len = read.object_len;
    if len == 0 {
        return Err(Error::EmptyShard { key: key.to_owned() });
    }
    // Checks the length against the index (ShardTooShort) exactly as before.
    ShardIndex::byte_range(codec, n, len).map_err(index_err)?;
    let index = ShardIndex::decode(codec, n, len, &read.bytes).map_err(index_err)?;
    Ok(ShardState::Present(Arc::new(index)))
}

/// Whether chunks of this array are blosc frames whose layout the GPU path can use: the
/// last bytes→bytes codec other than `crc32c` (which only appends a checksum) is blosc.
pub fn needs_layout(meta: &ArrayMetadata) -> bool {
    let chain = match &meta.codecs.array_to_bytes {
        ArrayToBytes::Sharding(s) => &s.codecs,
        ArrayToBytes::Bytes { .. } => &meta.codecs,
    };
    matches!(
        chain.bytes_to_bytes.iter().rev().find(|c| !matches!(c, BytesToBytes::Crc32c)),
        Some(BytesToBytes::Blosc { .. })
    )
}

/// Where to probe for a layout: `(key, offset, nbytes)` of the first present, non-empty
/// chunk among `shards` (given with their keys, in the sample's order).
pub fn layout_probe<'a>(
    shards: impl IntoIterator<Item = (&'a str, &'a ShardState)>,
) -> Option<(String, u64, u64)> {
    shards.into_iter().find_map(|(key, state)| match state {
        ShardState::Absent => None,
        ShardState::Whole { len } => (*len > 0).then(|| (key.to_owned(), 0, *len)),
        ShardState::Present(index) => (0..index.len() as u64).find_map(|i| {
            let range = index.chunk_range(i).ok().flatten().filter(|r| !r.is_empty())?;
            Some((key.to_owned(), range.start, range.end - range.start))
        }),
    })
}

/// Reads the chunk at `key[offset..offset+nbytes]` and derives its blosc layout.
///
/// # Errors
/// `Layout` for a malformed frame, `UnsupportedBloscCompressor` when the frame's
/// compressor is not in `decodable`, `Store` for I/O failures.
pub fn fetch_layout(
    store: &dyn Store,
    uri: &Arc<str>,
    key: &str,
    offset: u64,
    nbytes: u64,
    decodable: &[Compressor],
) -> Result<BloscLayout, Error> {
    let bad = |source| Error::Layout { uri: uri.clone(), key: key.to_owned(), source };
    let len =
        usize::try_from(nbytes).map_err(|_| bad(zarr::Error::Overflow { what: "chunk length" }))?;
    let mut buf = vec![0; len];
    store.read_exact(key, offset, &mut buf).map_err(store_err(key))?;
    let layout = blosc::layout(&buf).map_err(bad)?;
    if !decodable.contains(&layout.compressor) {
        return Err(Error::UnsupportedBloscCompressor {
            uri: uri.clone(),
            key: key.to_owned(),
            compressor: layout.compressor.name(),
        });
    }
    Ok(layout)
}
