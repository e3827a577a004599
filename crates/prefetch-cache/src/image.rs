//! OME-NGFF image groups over a [`Store`]: a sample whose uri names an image group (not an
//! array) resolves to one of its levels' arrays ([`fetch_level`], the prefetcher's
//! metadata fetch), and [`open_image`] reads a group's levels and labels for the facade.
//!
//! The order of reads keeps a plain array as cheap as before: its metadata is read first,
//! exactly as [`fetch::fetch_metadata`] always did; group metadata is read only when the
//! uri turned out not to be an array. An OME-NGFF 0.5 group's `zarr.json` is then read a
//! second time (once per `(uri, level)`, which the prefetcher caches), and a 0.4 group
//! costs the failed lookups of the array's metadata before its `.zattrs`.

use crate::sync::StdArc as Arc;

use store::Store;
use zarr::ngff::{self, ImageMetadata, Multiscale, NgffError};

use crate::error::Error;
pub use crate::error::ImageError;
use crate::fetch::{self, ArrayInfo, join_key};

/// An image group's parsed metadata and the file it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageGroup {
    pub uri: Arc<str>,
    /// The metadata file: `<uri>/zarr.json` (0.5) or `<uri>/.zattrs` (0.4).
    pub key: String,
    pub meta: ImageMetadata,
}

impl ImageGroup {
    /// The default image, `multiscales[0]`.
    fn image(&self) -> Result<&Multiscale, Error> {
        self.meta.image().ok_or_else(|| {
            let source = NgffError::Empty { at: "multiscales".into() };
            Error::Image(ImageError::Metadata { key: self.key.clone(), source })
        })
    }
}

/// An image group with every level's array metadata and its labels.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageInfo {
    pub group: ImageGroup,
    /// One per dataset of `multiscales[0]`, highest resolution first.
    pub levels: Vec<ArrayInfo>,
    /// The label images its `labels` group lists (paths relative to `labels/`); empty
    /// when it has none.
    pub labels: Vec<String>,
}

/// One of `zarr::ngff`'s parsers of a metadata document.
type Parser<T> = fn(&[u8]) -> Result<T, NgffError>;

fn store_err(key: &str) -> impl FnOnce(store::Error) -> Error + '_ {
    move |source| Error::Store { key: key.to_owned(), source }
}

/// `Ok(None)` when `key` does not exist.
fn read_optional(store: &dyn Store, key: &str) -> Result<Option<Vec<u8>>, Error> {
    match store.read_all(key) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(store_err(key)(e)),
    }
}

/// Parses one metadata file, telling "not an image" from "a broken image".
fn parse(key: String, bytes: &[u8], parse: Parser<ImageMetadata>) -> Result<ImageMetadata, Error> {
    parse(bytes).map_err(|source| {
        if source.is_not_an_image() {
            Error::Image(ImageError::NotAnImage { key, source })
        } else {
            Error::Image(ImageError::Metadata { key, source })
        }
    })
}

/// Reads an image group's metadata: OME-NGFF 0.5 from `zarr.json`, else 0.4 from
/// `.zattrs`.
///
/// # Errors
/// `Image(NotFound)` when neither exists (nor a `.zgroup`); `Image(NotAnImage)` for a
/// group or array without `multiscales`; `Image(Metadata)` for malformed metadata;
/// `Store` for read failures.
pub fn read_group(store: &dyn Store, uri: &Arc<str>) -> Result<ImageGroup, Error> {
    let v3 = join_key(uri, "zarr.json");
    if let Some(bytes) = read_optional(store, &v3)? {
        let meta = parse(v3.clone(), &bytes, ImageMetadata::from_group_json)?;
        return Ok(ImageGroup { uri: uri.clone(), key: v3, meta });
    }
    let v2 = join_key(uri, ".zattrs");
    if let Some(bytes) = read_optional(store, &v2)? {
        let meta = parse(v2.clone(), &bytes, ImageMetadata::from_zattrs)?;
        return Ok(ImageGroup { uri: uri.clone(), key: v2, meta });
    }
    let zgroup = join_key(uri, ".zgroup");
    if store.stat(&zgroup).map_err(store_err(&zgroup))?.is_some() {
        let source = NgffError::NotAnImage { key: "multiscales" };
        return Err(Error::Image(ImageError::NotAnImage { key: zgroup, source }));
    }
    Err(Error::Image(ImageError::NotFound { uri: uri.clone() }))
}

/// Whether a metadata fetch failed because the uri is not an array (absent, or a group),
/// so that it may be an image group.
fn not_an_array(e: &Error) -> bool {
    matches!(
        e,
        Error::MetadataNotFound { .. }
            | Error::Metadata { source: zarr::Error::NotAnArray { .. }, .. }
    )
}

/// The array of level `level` of `group`, with its metadata.
///
/// # Errors
/// `Image(LevelOutOfRange)`, `Image(MissingLevel)` when its path holds no array,
/// `Image(LevelRank)`, and the level array's own metadata errors.
pub fn fetch_group_level(
    store: &dyn Store,
    group: &ImageGroup,
    level: usize,
) -> Result<ArrayInfo, Error> {
    let image = group.image()?;
    let Some(dataset) = image.datasets.get(level) else {
        return Err(Error::Image(ImageError::LevelOutOfRange {
            key: group.key.clone(),
            level,
            levels: image.datasets.len(),
        }));
    };
    let uri: Arc<str> = join_key(&group.uri, &dataset.path).into();
    let info = fetch::fetch_metadata(store, &uri).map_err(|e| match e {
        Error::MetadataNotFound { .. } => Error::Image(ImageError::MissingLevel {
            key: group.key.clone(),
            level,
            path: dataset.path.clone(),
            uri: uri.to_string(),
        }),
        e => e,
    })?;
    let (rank, axes) = (info.meta.shape.len(), image.axes.len());
    if rank != axes {
        return Err(Error::Image(ImageError::LevelRank {
            key: group.key.clone(),
            level,
            uri: uri.to_string(),
            rank,
            axes,
        }));
    }
    Ok(info)
}

/// The metadata fetch of a sample: the array at `uri`, or, when `uri` is an OME-NGFF
/// image group, the array of its level `level` (default 0).
///
/// # Errors
/// The array's metadata errors ([`fetch::fetch_metadata`]; `MetadataNotFound` when there
/// is neither an array nor a group); `Image(LevelOnArray)` for a level on an array; the
/// errors of [`read_group`] and [`fetch_group_level`].
pub fn fetch_level(
    store: &dyn Store,
    uri: &Arc<str>,
    level: Option<usize>,
) -> Result<ArrayInfo, Error> {
    let not_array = match fetch::fetch_metadata(store, uri) {
        Ok(info) => {
            return match level {
                None => Ok(info),
                Some(level) => {
                    Err(Error::Image(ImageError::LevelOnArray { uri: uri.clone(), level }))
                }
            };
        }
        Err(e) if not_an_array(&e) => e,
        Err(e) => return Err(e),
    };
    let group = match read_group(store, uri) {
        Ok(g) => g,
        // Nothing at all: the array's own "not found" says it best.
        Err(Error::Image(ImageError::NotFound { .. })) => return Err(not_array),
        Err(e) => return Err(e),
    };
    fetch_group_level(store, &group, level.unwrap_or(0))
}

/// The label images listed by the group's `labels` group (none when it has none).
///
/// # Errors
/// `Image(Metadata)` naming the labels file when it is malformed; `Store`.
fn read_labels(store: &dyn Store, group: &ImageGroup) -> Result<Vec<String>, Error> {
    let (file, parse): (_, Parser<Vec<String>>) = match group.meta.version {
        ngff::NgffVersion::V0_5 => ("labels/zarr.json", ngff::labels_from_group_json),
        ngff::NgffVersion::V0_4 => ("labels/.zattrs", ngff::labels_from_zattrs),
    };
    let key = join_key(&group.uri, file);
    match read_optional(store, &key)? {
        None => Ok(Vec::new()),
        Some(bytes) => {
            parse(&bytes).map_err(|source| Error::Image(ImageError::Metadata { key, source }))
        }
    }
}

/// Reads an image group: its metadata, every level's array metadata and its labels.
///
/// # Errors
/// As [`read_group`] and [`fetch_group_level`] (for every level), and a malformed labels
/// group.
pub fn open_image(store: &dyn Store, uri: &Arc<str>) -> Result<ImageInfo, Error> {
    let group = read_group(store, uri)?;
    let n = group.image()?.datasets.len();
    let levels = (0..n).map(|l| fetch_group_level(store, &group, l)).collect::<Result<_, _>>()?;
    let labels = read_labels(store, &group)?;
    Ok(ImageInfo { group, levels, labels })
}
