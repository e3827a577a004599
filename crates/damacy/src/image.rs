//! OME-NGFF images (0.4 and 0.5): open an image group and list its resolution levels
//! (path, shape, dtype, chunks, axes, scale, translation) and its labels, and map
//! physical boxes to voxel boxes at a level. Reading a level's crops goes through a
//! [`Sample`] naming the group and the level, like any other sample.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use prefetch_cache::{ArrayInfo, ImageInfo};
use zarr::ngff::{Axis, NgffVersion, PhysicalBox, ScaleTranslation};
use zarr::{Aabb, DataType};

use crate::batch::{Sample, normalize};
use crate::config::ObjectStoreConfig;
use crate::error::{Error, Result};

/// An OME-NGFF image group: its default multiscale image (`multiscales[0]`), levels
/// highest resolution first, and the label images listed by its `labels` group.
///
/// ```no_run
/// use damacy::{Image, ObjectStoreConfig, Sample};
/// let image = Image::open("/data/cells.ome.zarr", &ObjectStoreConfig::default())?;
/// for level in image.levels() {
///     println!("{} {:?} {} scale {:?}", level.path(), level.shape(), level.dtype(), level.scale());
/// }
/// // The voxels of level 1 that cover a physical box (in the axes' units).
/// let coarse = &image.levels()[1];
/// let aabb = coarse.voxel_box(&[0.0, 10.0, 10.0], &[8.0, 42.0, 42.0])?;
/// let sample = Sample::new(image.uri(), aabb.lo.into_vec(), aabb.hi.into_vec())?.level(1);
/// # Ok::<(), damacy::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    uri: PathBuf,
    metadata: PathBuf,
    version: NgffVersion,
    name: Option<String>,
    axes: Vec<Axis>,
    levels: Vec<ImageLevel>,
    labels: Vec<String>,
}

/// One resolution level of an [`Image`]: a zarr array and its voxel → physical mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageLevel {
    image: PathBuf,
    index: usize,
    path: String,
    uri: PathBuf,
    shape: Vec<u64>,
    dtype: DataType,
    chunks: Vec<u64>,
    shard_shape: Option<Vec<u64>>,
    transform: ScaleTranslation,
}

impl Image {
    /// Opens the image group at `uri`: a local path or an `s3://`, `gs://`, `az://` or
    /// `http(s)://` uri, read through the same stores as [`crate::Pipeline::new`]
    /// (configured by `objects` and the environment).
    ///
    /// # Errors
    /// `Image` naming the file at fault: the group is missing or is not an image
    /// ([`SampleError::Image`](crate::SampleError::Image)), its metadata is malformed, a
    /// level's path holds no array or a level's array metadata is invalid, or a read
    /// failed; `Store` when the stores cannot be set up.
    pub fn open(uri: impl Into<PathBuf>, objects: &ObjectStoreConfig) -> Result<Self> {
        let fs = store::FsStoreConfig { io_threads: 2, ..Default::default() };
        let store = store::UriStore::new(fs, objects.to_remote()?)?;
        Self::open_in(uri, &store)
    }

    /// Opens the image group at `uri`, a key of `store`.
    ///
    /// # Errors
    /// As [`Image::open`].
    pub fn open_in(uri: impl Into<PathBuf>, store: &dyn store::Store) -> Result<Self> {
        let uri = normalize(&uri.into());
        let fail = |source| Error::Image { uri: uri.clone(), source: Box::new(source) };
        let key: Arc<str> =
            uri.to_str().ok_or_else(|| fail(crate::SampleError::NonUtf8Path))?.into();
        let info = prefetch_cache::image::open_image(store, &key)
            .map_err(|e| fail(crate::resolve::sample_error(e)))?;
        Ok(Self::from_info(uri, info))
    }

    fn from_info(uri: PathBuf, info: ImageInfo) -> Self {
        let ImageInfo { group, levels, labels } = info;
        let metadata = PathBuf::from(&group.key);
        let version = group.meta.version;
        // `open_image` resolved every level of `multiscales[0]`, so it exists.
        let (name, axes, datasets) = match group.meta.multiscales.into_iter().next() {
            Some(m) => (m.name, m.axes, m.datasets),
            None => (None, Vec::new(), Vec::new()),
        };
        let levels = datasets
            .into_iter()
            .zip(levels)
            .enumerate()
            .map(|(index, (d, a))| ImageLevel::new(&uri, index, d.path, d.level_transform, &a))
            .collect();
        Self { uri, metadata, version, name, axes, levels, labels }
    }

    /// The group's path (normalized as [`Sample::new`] does).
    pub fn uri(&self) -> &Path {
        &self.uri
    }

    /// The file the metadata came from: `zarr.json` (0.5) or `.zattrs` (0.4).
    pub fn metadata_file(&self) -> &Path {
        &self.metadata
    }

    /// 0.4 or 0.5.
    pub fn version(&self) -> NgffVersion {
        self.version
    }

    /// The multiscale's `name`, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The axes (names, types, units), in the arrays' axis order.
    pub fn axes(&self) -> &[Axis] {
        &self.axes
    }

    /// The levels, highest resolution first (index = the level a [`Sample`] names).
    pub fn levels(&self) -> &[ImageLevel] {
        &self.levels
    }

    /// The label images listed by the `labels` group (paths relative to `labels/`; each
    /// is an image group of its own: open it with [`Image::label_uri`]).
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The path of label image `name`: `<uri>/labels/<name>`.
    pub fn label_uri(&self, name: &str) -> PathBuf {
        PathBuf::from(prefetch_cache::fetch::join_key(
            &self.uri.to_string_lossy(),
            &format!("labels/{name}"),
        ))
    }

    /// A sample of level `level`'s voxels `lo..hi` (a shorthand for
    /// `Sample::new(image.uri(), lo, hi)?.level(level)`).
    ///
    /// # Errors
    /// As [`Sample::new`].
    pub fn sample(&self, level: usize, lo: Vec<u64>, hi: Vec<u64>) -> Result<Sample> {
        Ok(Sample::new(&self.uri, lo, hi)?.level(level))
    }
}

impl ImageLevel {
    fn new(
        image: &Path,
        index: usize,
        path: String,
        transform: ScaleTranslation,
        a: &ArrayInfo,
    ) -> Self {
        Self {
            image: image.to_owned(),
            index,
            path,
            uri: PathBuf::from(&*a.uri),
            shape: a.meta.shape.clone(),
            dtype: a.meta.data_type,
            chunks: a.geometry.chunk_shape.clone(),
            shard_shape: a.geometry.sharded.then(|| a.geometry.shard_shape.clone()),
            transform,
        }
    }

    /// The level's index in the image (0 is the highest resolution).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The dataset's `path`, relative to the image group.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The level array's own path.
    pub fn uri(&self) -> &Path {
        &self.uri
    }

    pub fn shape(&self) -> &[u64] {
        &self.shape
    }

    pub fn dtype(&self) -> DataType {
        self.dtype
    }

    /// The chunk shape (the inner chunk of a sharded array).
    pub fn chunks(&self) -> &[u64] {
        &self.chunks
    }

    /// The shard shape of a sharded array.
    pub fn shard_shape(&self) -> Option<&[u64]> {
        self.shard_shape.as_deref()
    }

    /// The physical size of a voxel on each axis: the dataset's scale times the
    /// multiscale's.
    pub fn scale(&self) -> &[f64] {
        &self.transform.scale
    }

    /// The physical position of voxel 0's centre on each axis.
    pub fn translation(&self) -> &[f64] {
        &self.transform.translation
    }

    /// Voxel → physical for this level (voxel centres at `index * scale + translation`).
    pub fn transform(&self) -> &ScaleTranslation {
        &self.transform
    }

    /// The smallest box of this level's voxels that covers the physical box `lo..hi`
    /// (see [`ScaleTranslation::voxel_box`] for the rounding).
    ///
    /// # Errors
    /// `PhysicalBox` when the box has the wrong rank, is empty or not finite on an axis,
    /// or covers voxels outside the level (the error names the axis and the extent).
    pub fn voxel_box(&self, lo: &[f64], hi: &[f64]) -> Result<Aabb> {
        self.transform.voxel_aabb(lo, hi, &self.shape).map_err(|e| self.box_error(e))
    }

    /// The physical extent of a box of this level's voxels, from the outer faces of its
    /// first and last voxels.
    ///
    /// # Errors
    /// `PhysicalBox` when the box's rank differs from the level's.
    pub fn physical_box(&self, aabb: &Aabb) -> Result<PhysicalBox> {
        self.transform.physical_box(&aabb.lo, &aabb.hi).map_err(|e| self.box_error(e))
    }

    fn box_error(&self, e: zarr::ngff::NgffError) -> Error {
        Error::PhysicalBox { uri: self.image.clone(), level: self.index, source: Box::new(e) }
    }
}
