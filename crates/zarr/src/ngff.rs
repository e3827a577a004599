//! OME-NGFF images, versions 0.4 and 0.5: the `multiscales` metadata of an image group
//! (axes, resolution levels and their coordinate transformations), the `labels` list of
//! its `labels` group, and the mapping between physical and voxel boxes at a level.
//!
//! Specs: <https://ngff.openmicroscopy.org/0.4/> and <https://ngff.openmicroscopy.org/0.5/>,
//! §"axes metadata", §"coordinateTransformations metadata", §"multiscales metadata" and
//! §"labels metadata". Version 0.4 keeps the metadata in a zarr v2 group's `.zattrs`
//! (top-level `multiscales`, each with `"version": "0.4"`); 0.5 keeps it in a zarr v3
//! group's `zarr.json`, under `attributes.ome` (with `"version": "0.5"`).
//!
//! What is checked is what the specs say MUST hold: 2 to 5 axes with unique names, 2 or 3
//! of type `space`, at most one `time` and at most one `channel`, custom or untyped axis,
//! in the order time, channel/custom, space; at least one dataset, each with a relative
//! `path` and exactly one `scale` transformation optionally followed by one `translation`,
//! each as long as the axes and finite. Two leniencies, both harmless to a reader: an
//! `identity` transformation is accepted and ignored (the specs' own 0.4 test suite has
//! one), and units are not checked against the UDUNITS list (a SHOULD). Transformations
//! stored as binary data (`"path"` instead of a list) are refused as unsupported. A zero
//! scale is refused: it maps a level onto a point, and no box can be mapped back.
//!
//! Physical and voxel coordinates: a level's transformation is its dataset's scale then
//! translation, then the multiscale's own (if any), composed into one scale and one
//! translation per axis. The transformation maps the *centre* of voxel `i` to
//! `i * scale + translation`, so voxel `i` spans `[(i - ½)·scale, (i + ½)·scale)` plus the
//! translation: the pixel-centre convention, which ome-zarr-py's pyramids follow (a level
//! downsampled by 2 carries a half-voxel translation) and which NGFF 0.6 makes explicit.

use serde_json::{Map, Value};

use crate::dims::Dims;
use crate::geometry::Aabb;

/// Result alias for this module.
pub type Result<T, E = NgffError> = std::result::Result<T, E>;

/// Everything that can be wrong with OME-NGFF metadata, or with a box mapped through it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum NgffError {
    /// The bytes are not valid JSON.
    #[error("not valid JSON (line {line}, column {column}): {message}")]
    Json { line: usize, column: usize, message: String },
    /// A `zarr.json` whose `zarr_format` is not 3.
    #[error("`zarr_format` is {found}, but an OME-NGFF 0.5 group is zarr v3 (`zarr_format: 3`)")]
    ZarrFormat { found: String },
    /// A `zarr.json` that describes an array (or anything but a group).
    #[error("the document describes a `{node_type}`, not a group")]
    NotAGroup { node_type: String },
    /// A group whose attributes have no `multiscales`: a zarr group, not an image.
    #[error("no `{key}` in the group's attributes: this is a zarr group but not an OME-NGFF image")]
    NotAnImage {
        /// Where `multiscales` (or `labels`) was looked for.
        key: &'static str,
    },
    /// A version this crate does not read.
    #[error(
        "OME-NGFF version `{version}` is not supported here (0.4 lives in a zarr v2 group's .zattrs, 0.5 in a zarr v3 group's zarr.json)"
    )]
    UnsupportedVersion { version: String },
    /// A required field is absent.
    #[error("`{at}` is missing")]
    Missing { at: String },
    /// A field has the wrong JSON type.
    #[error("`{at}` must be {expected}")]
    WrongType { at: String, expected: &'static str },
    /// A list that must not be empty is.
    #[error("`{at}` is empty; it needs at least one entry")]
    Empty { at: String },
    /// Too few or too many axes.
    #[error("`{at}` has {count} axes; an image has 2 to 5")]
    AxisCount { at: String, count: usize },
    /// Two axes share a name.
    #[error("`{at}` names axis `{name}` twice; axis names must be unique")]
    DuplicateAxis { at: String, name: String },
    /// Not 2 or 3 space axes.
    #[error("`{at}` has {count} axes of type `space`; an image has 2 or 3")]
    SpaceAxisCount { at: String, count: usize },
    /// More than one axis of a kind that may appear once.
    #[error("`{at}` has {count} axes of type {kind}; at most one is allowed")]
    AxisKindCount { at: String, kind: &'static str, count: usize },
    /// Axes out of the order time, channel/custom, space.
    #[error(
        "`{at}`: axis `{name}` ({kind}) comes after a {after} axis; axes go time, then channel or custom, then space"
    )]
    AxisOrder { at: String, name: String, kind: &'static str, after: &'static str },
    /// A dataset or label path that is not a plain relative path.
    #[error("`{at}` is `{path}`: {reason}")]
    BadPath { at: String, path: String, reason: &'static str },
    /// A transformation type other than scale, translation (or identity).
    #[error("`{at}` has type `{found}`; a level's transformations are `scale` and `translation`")]
    TransformType { at: String, found: String },
    /// A transformation stored as binary data in the container.
    #[error("`{at}` is stored at a path in the container; only inline lists are supported")]
    TransformByPath { at: String },
    /// Not exactly one scale, or more than one translation.
    #[error("`{at}` has {count} `{kind}` transformations; it needs {expected}")]
    TransformCount { at: String, kind: &'static str, count: usize, expected: &'static str },
    /// A translation listed before the scale.
    #[error("`{at}` lists `translation` before `scale`; the translation must come after")]
    TranslationBeforeScale { at: String },
    /// A scale or translation whose length differs from the number of axes.
    #[error("`{at}` has {len} values but the image has {axes} axes")]
    TransformLength { at: String, len: usize, axes: usize },
    /// A value that is not a finite number (or a composed one that overflowed).
    #[error("`{at}` is not a finite number")]
    NotFinite { at: String },
    /// A zero scale, which maps a whole level onto one point.
    #[error("`{at}` is 0 on axis {axis}; a scale must be non-zero")]
    ZeroScale { at: String, axis: usize },
    /// A box whose rank differs from the level's.
    #[error("the box has rank {got}, the image has {expected} axes")]
    BoxRank { expected: usize, got: usize },
    /// A physical box that is empty (or not finite) on an axis.
    #[error("the physical box is empty or not finite on axis {axis}: {lo}..{hi}")]
    EmptyBox { axis: usize, lo: f64, hi: f64 },
    /// A physical box that maps outside the level's voxels.
    #[error(
        "the physical box covers voxels {lo}..{hi} on axis {axis}, outside the level's 0..{extent}"
    )]
    OutsideLevel { axis: usize, lo: i64, hi: i64, extent: u64 },
    /// Physical coordinates too large for their scale: `f64` cannot tell neighbouring
    /// voxels apart there (for example a translation of 10^16 with a scale of 1).
    #[error(
        "the physical coordinates on axis {axis} are too coarse (in f64) to tell this level's voxels apart"
    )]
    Imprecise { axis: usize },
}

impl NgffError {
    /// Whether the document is no image's metadata at all (not JSON, not a zarr v3 group,
    /// or a group without `multiscales`), as opposed to an image's malformed metadata.
    pub fn is_not_an_image(&self) -> bool {
        match self {
            NgffError::Json { .. }
            | NgffError::ZarrFormat { .. }
            | NgffError::NotAGroup { .. }
            | NgffError::NotAnImage { .. } => true,
            NgffError::Missing { at } | NgffError::WrongType { at, .. } => {
                matches!(at.as_str(), "(root)" | "zarr_format" | "node_type" | "attributes")
            }
            _ => false,
        }
    }
}

/// The OME-NGFF version of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NgffVersion {
    /// 0.4: a zarr v2 group, metadata in `.zattrs`.
    V0_4,
    /// 0.5: a zarr v3 group, metadata in `zarr.json` under `attributes.ome`.
    V0_5,
}

impl NgffVersion {
    /// `"0.4"` or `"0.5"`.
    pub fn as_str(self) -> &'static str {
        match self {
            NgffVersion::V0_4 => "0.4",
            NgffVersion::V0_5 => "0.5",
        }
    }
}

impl std::fmt::Display for NgffVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An axis's `type`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AxisType {
    Space,
    Time,
    Channel,
    /// Any other string (the specs allow custom types).
    Custom(String),
}

impl AxisType {
    fn parse(s: &str) -> Self {
        match s {
            "space" => AxisType::Space,
            "time" => AxisType::Time,
            "channel" => AxisType::Channel,
            other => AxisType::Custom(other.to_owned()),
        }
    }

    /// The name as written in the metadata.
    pub fn as_str(&self) -> &str {
        match self {
            AxisType::Space => "space",
            AxisType::Time => "time",
            AxisType::Channel => "channel",
            AxisType::Custom(s) => s,
        }
    }
}

/// One axis of an image.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Axis {
    pub name: String,
    /// `None` when the metadata gives no type (or `null`).
    pub axis_type: Option<AxisType>,
    /// The physical unit (`micrometer`, `second`, ...), as written.
    pub unit: Option<String>,
}

/// A scale followed by a translation, per axis: `physical = index * scale + translation`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleTranslation {
    pub scale: Vec<f64>,
    /// Zeros when the metadata has no translation.
    pub translation: Vec<f64>,
}

/// A box of voxel indices `lo..hi` per axis; indices may be negative or past the level's
/// extent (see [`ScaleTranslation::voxel_box`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoxelBox {
    pub lo: Vec<i64>,
    pub hi: Vec<i64>,
}

/// A box in physical coordinates, `lo..hi` per axis.
#[derive(Debug, Clone, PartialEq)]
pub struct PhysicalBox {
    pub lo: Vec<f64>,
    pub hi: Vec<f64>,
}

impl ScaleTranslation {
    /// Scale 1 and translation 0 on `rank` axes.
    pub fn identity(rank: usize) -> Self {
        Self { scale: vec![1.0; rank], translation: vec![0.0; rank] }
    }

    /// The number of axes.
    pub fn rank(&self) -> usize {
        self.scale.len()
    }

    /// `self` followed by `outer`: scale `s1·s2`, translation `t1·s2 + t2`.
    ///
    /// # Errors
    /// `TransformLength` when the ranks differ; `NotFinite` (at `at`) when a composed
    /// value overflows.
    pub fn then(&self, outer: &ScaleTranslation, at: &str) -> Result<Self> {
        if outer.rank() != self.rank() {
            return Err(NgffError::TransformLength {
                at: at.to_owned(),
                len: outer.rank(),
                axes: self.rank(),
            });
        }
        let mut out = Self::identity(self.rank());
        for i in 0..self.rank() {
            out.scale[i] = self.scale[i] * outer.scale[i];
            out.translation[i] = self.translation[i] * outer.scale[i] + outer.translation[i];
            if !out.scale[i].is_finite() || !out.translation[i].is_finite() {
                return Err(NgffError::NotFinite { at: at.to_owned() });
            }
            // Two tiny scales can underflow to zero, which no box maps back through.
            if out.scale[i] == 0.0 {
                return Err(NgffError::ZeroScale { at: at.to_owned(), axis: i });
            }
        }
        Ok(out)
    }

    fn check_rank(&self, got: usize) -> Result<()> {
        if got == self.rank() {
            Ok(())
        } else {
            Err(NgffError::BoxRank { expected: self.rank(), got })
        }
    }

    /// The physical position of a (fractional) voxel index: `index * scale + translation`
    /// (integers are voxel centres).
    ///
    /// # Errors
    /// `BoxRank` when `index` has the wrong rank.
    pub fn to_physical(&self, index: &[f64]) -> Result<Vec<f64>> {
        self.check_rank(index.len())?;
        Ok(index
            .iter()
            .zip(&self.scale)
            .zip(&self.translation)
            .map(|((v, s), t)| v * s + t)
            .collect())
    }

    /// The physical extent of the voxels `lo..hi`: from the outer face of voxel `lo` to
    /// the outer face of voxel `hi - 1`, that is index `lo - ½` to `hi - ½` (ordered
    /// low to high on an axis with a negative scale).
    ///
    /// # Errors
    /// `BoxRank` when the corners' ranks differ from the transformation's.
    pub fn physical_box(&self, lo: &[u64], hi: &[u64]) -> Result<PhysicalBox> {
        self.check_rank(lo.len())?;
        self.check_rank(hi.len())?;
        let mut out =
            PhysicalBox { lo: Vec::with_capacity(lo.len()), hi: Vec::with_capacity(lo.len()) };
        for i in 0..self.rank() {
            let (s, t) = (self.scale[i], self.translation[i]);
            // u64 → f64 is exact below 2^53, far beyond any array extent in practice.
            let a = (lo[i] as f64 - 0.5) * s + t;
            let b = (hi[i] as f64 - 0.5) * s + t;
            out.lo.push(a.min(b));
            out.hi.push(a.max(b));
        }
        Ok(out)
    }

    /// The smallest voxel box whose voxels cover the physical box `lo..hi`.
    ///
    /// On each axis the physical bounds become continuous voxel coordinates
    /// `(p - translation) / scale + ½` (voxel `i` spans `i..i+1` there); the low bound
    /// rounds down and the high bound rounds up, so the voxel box covers the physical box.
    /// A coordinate within floating-point rounding of an integer (`64 ε (1 + (|p| + |t|) /
    /// |s|)` voxels) counts as that integer, so a physical box made by
    /// [`physical_box`](Self::physical_box) maps back to exactly the voxels it came from
    /// rather than one more on each side.
    ///
    /// # Errors
    /// `BoxRank`; `EmptyBox` when `hi <= lo` or a bound is not finite on an axis;
    /// `Imprecise` when that rounding error reaches a quarter voxel (the coordinates
    /// cannot resolve single voxels there).
    pub fn voxel_box(&self, lo: &[f64], hi: &[f64]) -> Result<VoxelBox> {
        self.check_rank(lo.len())?;
        self.check_rank(hi.len())?;
        let mut out =
            VoxelBox { lo: Vec::with_capacity(lo.len()), hi: Vec::with_capacity(lo.len()) };
        for axis in 0..self.rank() {
            let (p0, p1) = (lo[axis], hi[axis]);
            if !(p0.is_finite() && p1.is_finite() && p0 < p1) {
                return Err(NgffError::EmptyBox { axis, lo: p0, hi: p1 });
            }
            let (s, t) = (self.scale[axis], self.translation[axis]);
            // The rounding error of `(p - t) / s`, in voxels.
            let tol = |p: f64| 64.0 * f64::EPSILON * (1.0 + (p.abs() + t.abs()) / s.abs());
            if tol(p0).max(tol(p1)) > 0.25 {
                return Err(NgffError::Imprecise { axis });
            }
            let index = |p: f64| {
                let v = (p - t) / s + 0.5;
                let r = v.round();
                if (v - r).abs() <= tol(p) { (r, r) } else { (v.floor(), v.ceil()) }
            };
            let (a, b) = (index(p0), index(p1));
            // A negative scale reverses the axis: the low physical bound is the high index.
            let (v0, v1) = if s > 0.0 { (a.0, b.1) } else { (b.0, a.1) };
            // The precision check bounds |p - t| / |s| below 0.25 / (64 ε) ≈ 1.8e13, so both
            // are integers far inside i64 and the casts are exact.
            out.lo.push(v0 as i64);
            out.hi.push(v1 as i64);
        }
        Ok(out)
    }

    /// [`voxel_box`](Self::voxel_box) checked against a level's `shape`, as an [`Aabb`].
    ///
    /// # Errors
    /// As `voxel_box`, and `OutsideLevel` naming the first axis on which the voxel box
    /// leaves `0..shape`.
    pub fn voxel_aabb(&self, lo: &[f64], hi: &[f64], shape: &[u64]) -> Result<Aabb> {
        self.check_rank(shape.len())?;
        let b = self.voxel_box(lo, hi)?;
        let mut out = Aabb { lo: Dims::new(), hi: Dims::new() };
        for (axis, ((&l, &h), &extent)) in b.lo.iter().zip(&b.hi).zip(shape).enumerate() {
            match (u64::try_from(l), u64::try_from(h)) {
                (Ok(l), Ok(h)) if h <= extent => {
                    out.lo.push(l);
                    out.hi.push(h);
                }
                _ => return Err(NgffError::OutsideLevel { axis, lo: l, hi: h, extent }),
            }
        }
        Ok(out)
    }
}

/// One resolution level as the metadata lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// The level's array, relative to the image group.
    pub path: String,
    /// The dataset's own `coordinateTransformations`.
    pub transform: ScaleTranslation,
    /// Voxel → physical for this level: the dataset's transformation, then the
    /// multiscale's (if any).
    pub level_transform: ScaleTranslation,
}

/// One entry of `multiscales`: an image pyramid.
#[derive(Debug, Clone, PartialEq)]
pub struct Multiscale {
    pub name: Option<String>,
    pub axes: Vec<Axis>,
    /// Highest resolution first.
    pub datasets: Vec<Dataset>,
    /// The multiscale's own `coordinateTransformations`, applied after each dataset's.
    pub transform: Option<ScaleTranslation>,
}

/// The OME-NGFF metadata of an image group.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageMetadata {
    pub version: NgffVersion,
    /// At least one; the first is the default image (specs: "use the first multiscale as a
    /// fallback").
    pub multiscales: Vec<Multiscale>,
}

fn parse_json(bytes: &[u8]) -> Result<Value> {
    serde_json::from_slice(bytes).map_err(|e| NgffError::Json {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })
}

fn wrong(at: impl Into<String>, expected: &'static str) -> NgffError {
    NgffError::WrongType { at: at.into(), expected }
}

fn object<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>> {
    v.as_object().ok_or_else(|| wrong(at, "an object"))
}

fn list<'a>(v: &'a Value, at: &str) -> Result<&'a Vec<Value>> {
    v.as_array().ok_or_else(|| wrong(at, "a list"))
}

fn required<'a>(obj: &'a Map<String, Value>, key: &str, at: &str) -> Result<&'a Value> {
    obj.get(key).ok_or_else(|| NgffError::Missing { at: format!("{at}.{key}") })
}

/// A string field that may be absent or `null`.
fn optional_string(obj: &Map<String, Value>, key: &str, at: &str) -> Result<Option<String>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(wrong(format!("{at}.{key}"), "a string")),
    }
}

/// A path relative to a group: non-empty `/`-separated names, none of them empty, `.` or
/// `..` (a level or label is inside the group, and store keys are plain).
fn relative_path(v: &Value, at: &str) -> Result<String> {
    let path = v.as_str().ok_or_else(|| wrong(at, "a string"))?;
    let bad = |reason| NgffError::BadPath { at: at.to_owned(), path: path.to_owned(), reason };
    if path.is_empty() {
        return Err(bad("a path must not be empty"));
    }
    if path.starts_with('/') || path.contains("://") {
        return Err(bad("a path must be relative to the group"));
    }
    if path.split('/').any(|seg| matches!(seg, "" | "." | "..")) {
        return Err(bad("a path's parts must not be empty, `.` or `..`"));
    }
    Ok(path.to_owned())
}

/// Where each kind of axis may stand: time, then channel/custom/untyped, then space.
fn axis_slot(t: Option<&AxisType>) -> (u8, &'static str) {
    match t {
        Some(AxisType::Time) => (0, "time"),
        Some(AxisType::Space) => (2, "space"),
        Some(AxisType::Channel) => (1, "channel"),
        Some(AxisType::Custom(_)) => (1, "custom"),
        None => (1, "untyped"),
    }
}

fn parse_axes(v: &Value, at: &str) -> Result<Vec<Axis>> {
    let items = list(v, at)?;
    if !(2..=5).contains(&items.len()) {
        return Err(NgffError::AxisCount { at: at.to_owned(), count: items.len() });
    }
    let mut axes: Vec<Axis> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at_i = format!("{at}[{i}]");
        let obj = object(item, &at_i)?;
        let name = required(obj, "name", &at_i)?
            .as_str()
            .ok_or_else(|| wrong(format!("{at_i}.name"), "a string"))?
            .to_owned();
        if axes.iter().any(|a| a.name == name) {
            return Err(NgffError::DuplicateAxis { at: at.to_owned(), name });
        }
        let axis_type = optional_string(obj, "type", &at_i)?.map(|t| AxisType::parse(&t));
        let unit = optional_string(obj, "unit", &at_i)?;
        axes.push(Axis { name, axis_type, unit });
    }
    let mut last: Option<(u8, &'static str)> = None;
    let mut counts = [0usize; 3];
    for a in &axes {
        let (slot, kind) = axis_slot(a.axis_type.as_ref());
        if let Some((prev, after)) = last
            && slot < prev
        {
            return Err(NgffError::AxisOrder {
                at: at.to_owned(),
                name: a.name.clone(),
                kind,
                after,
            });
        }
        last = Some((slot, kind));
        counts[usize::from(slot)] += 1;
    }
    if counts[0] > 1 {
        return Err(NgffError::AxisKindCount { at: at.to_owned(), kind: "time", count: counts[0] });
    }
    if counts[1] > 1 {
        return Err(NgffError::AxisKindCount {
            at: at.to_owned(),
            kind: "channel, custom or none",
            count: counts[1],
        });
    }
    if !(2..=3).contains(&counts[2]) {
        return Err(NgffError::SpaceAxisCount { at: at.to_owned(), count: counts[2] });
    }
    Ok(axes)
}

/// A list of finite numbers as long as the axes.
fn vector(v: &Value, at: &str, axes: usize) -> Result<Vec<f64>> {
    let items = list(v, at)?;
    if items.len() != axes {
        return Err(NgffError::TransformLength { at: at.to_owned(), len: items.len(), axes });
    }
    items
        .iter()
        .enumerate()
        .map(|(i, x)| match x.as_f64() {
            Some(f) if f.is_finite() => Ok(f),
            Some(_) => Err(NgffError::NotFinite { at: format!("{at}[{i}]") }),
            None => Err(wrong(format!("{at}[{i}]"), "a number")),
        })
        .collect()
}

/// A `coordinateTransformations` list: exactly one `scale`, then at most one
/// `translation`; `identity` entries are ignored.
fn parse_transforms(v: &Value, at: &str, axes: usize) -> Result<ScaleTranslation> {
    let items = list(v, at)?;
    let mut scale: Option<Vec<f64>> = None;
    let mut translation: Option<Vec<f64>> = None;
    let (mut scales, mut translations) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        let at_i = format!("{at}[{i}]");
        let obj = object(item, &at_i)?;
        let kind = required(obj, "type", &at_i)?
            .as_str()
            .ok_or_else(|| wrong(format!("{at_i}.type"), "a string"))?;
        let key = match kind {
            "identity" => continue,
            "scale" => "scale",
            "translation" => "translation",
            other => {
                return Err(NgffError::TransformType { at: at_i, found: other.to_owned() });
            }
        };
        let values = match obj.get(key) {
            Some(values) => vector(values, &format!("{at_i}.{key}"), axes)?,
            None if obj.contains_key("path") => {
                return Err(NgffError::TransformByPath { at: at_i });
            }
            None => return Err(NgffError::Missing { at: format!("{at_i}.{key}") }),
        };
        if key == "scale" {
            scales += 1;
            if translation.is_some() {
                return Err(NgffError::TranslationBeforeScale { at: at.to_owned() });
            }
            if let Some(axis) = values.iter().position(|&s| s == 0.0) {
                return Err(NgffError::ZeroScale { at: format!("{at_i}.scale"), axis });
            }
            scale = Some(values);
        } else {
            translations += 1;
            translation = Some(values);
        }
    }
    if scales != 1 {
        return Err(NgffError::TransformCount {
            at: at.to_owned(),
            kind: "scale",
            count: scales,
            expected: "exactly one",
        });
    }
    if translations > 1 {
        return Err(NgffError::TransformCount {
            at: at.to_owned(),
            kind: "translation",
            count: translations,
            expected: "at most one",
        });
    }
    let scale = scale.unwrap_or_else(|| vec![1.0; axes]);
    Ok(ScaleTranslation { translation: translation.unwrap_or_else(|| vec![0.0; axes]), scale })
}

fn parse_multiscale(v: &Value, at: &str) -> Result<Multiscale> {
    let obj = object(v, at)?;
    let axes = parse_axes(required(obj, "axes", at)?, &format!("{at}.axes"))?;
    let rank = axes.len();
    let transform = match obj.get("coordinateTransformations") {
        None | Some(Value::Null) => None,
        Some(t) => Some(parse_transforms(t, &format!("{at}.coordinateTransformations"), rank)?),
    };
    let at_ds = format!("{at}.datasets");
    let items = list(required(obj, "datasets", at)?, &at_ds)?;
    if items.is_empty() {
        return Err(NgffError::Empty { at: at_ds });
    }
    let mut datasets = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at_i = format!("{at_ds}[{i}]");
        let d = object(item, &at_i)?;
        let path = relative_path(required(d, "path", &at_i)?, &format!("{at_i}.path"))?;
        let at_t = format!("{at_i}.coordinateTransformations");
        let own = parse_transforms(required(d, "coordinateTransformations", &at_i)?, &at_t, rank)?;
        let level_transform = match &transform {
            Some(outer) => own.then(outer, &at_t)?,
            None => own.clone(),
        };
        datasets.push(Dataset { path, transform: own, level_transform });
    }
    Ok(Multiscale { name: optional_string(obj, "name", at)?, axes, datasets, transform })
}

fn parse_multiscales(v: &Value, at: &str) -> Result<Vec<Multiscale>> {
    let items = list(v, at)?;
    if items.is_empty() {
        return Err(NgffError::Empty { at: at.to_owned() });
    }
    items.iter().enumerate().map(|(i, m)| parse_multiscale(m, &format!("{at}[{i}]"))).collect()
}

/// The `attributes` of a zarr v3 group's `zarr.json` (`None` when absent or null).
fn v3_group_attributes(bytes: &[u8]) -> Result<Option<Map<String, Value>>> {
    let doc = parse_json(bytes)?;
    let Value::Object(mut root) = doc else { return Err(wrong("(root)", "an object")) };
    match root.get("zarr_format") {
        Some(v) if v.as_u64() == Some(3) => {}
        Some(v) => return Err(NgffError::ZarrFormat { found: v.to_string() }),
        None => return Err(NgffError::Missing { at: "zarr_format".into() }),
    }
    match root.get("node_type").map(Value::as_str) {
        Some(Some("group")) => {}
        Some(Some(other)) => return Err(NgffError::NotAGroup { node_type: other.to_owned() }),
        Some(None) => return Err(wrong("node_type", "a string")),
        None => return Err(NgffError::Missing { at: "node_type".into() }),
    }
    match root.remove("attributes") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(a)) => Ok(Some(a)),
        Some(_) => Err(wrong("attributes", "an object")),
    }
}

/// `attributes.ome` of a 0.5 group (`NotAnImage`, naming `key`, when there is none).
fn ome_namespace(bytes: &[u8], key: &'static str) -> Result<Map<String, Value>> {
    let Some(mut attrs) = v3_group_attributes(bytes)? else {
        return Err(NgffError::NotAnImage { key });
    };
    match attrs.remove("ome") {
        None => Err(NgffError::NotAnImage { key }),
        Some(Value::Object(o)) => Ok(o),
        Some(_) => Err(wrong("attributes.ome", "an object")),
    }
}

/// Checks `attributes.ome.version` is `"0.5"` (`labels` groups written by ome-zarr-py
/// carry no version, so `required` is false for them).
fn check_version(ome: &Map<String, Value>, required: bool) -> Result<()> {
    match ome.get("version") {
        Some(Value::String(v)) if v == "0.5" => Ok(()),
        Some(Value::String(v)) => Err(NgffError::UnsupportedVersion { version: v.clone() }),
        Some(_) => Err(wrong("attributes.ome.version", "a string")),
        None if required => Err(NgffError::Missing { at: "attributes.ome.version".into() }),
        None => Ok(()),
    }
}

/// The attributes object of a zarr v2 `.zattrs`.
fn v2_attributes(bytes: &[u8]) -> Result<Map<String, Value>> {
    match parse_json(bytes)? {
        Value::Object(o) => Ok(o),
        _ => Err(wrong("(root)", "an object")),
    }
}

impl ImageMetadata {
    /// Parses an OME-NGFF 0.4 image from its group's `.zattrs` (zarr v2).
    ///
    /// Each multiscale's `version` SHOULD be `"0.4"` (it may be absent); another value is
    /// refused, since 0.3 and earlier differ in shape.
    ///
    /// # Errors
    /// `Json`; `NotAnImage` when there is no `multiscales`; `UnsupportedVersion`; the
    /// structural errors of the module's checks (see the module documentation).
    pub fn from_zattrs(bytes: &[u8]) -> Result<Self> {
        let attrs = v2_attributes(bytes)?;
        let Some(ms) = attrs.get("multiscales") else {
            return Err(NgffError::NotAnImage { key: "multiscales" });
        };
        if let Some(items) = ms.as_array() {
            for (i, m) in items.iter().enumerate() {
                match m.get("version") {
                    None | Some(Value::Null) => {}
                    Some(Value::String(v)) if v == "0.4" => {}
                    Some(Value::String(v)) => {
                        return Err(NgffError::UnsupportedVersion { version: v.clone() });
                    }
                    Some(_) => return Err(wrong(format!("multiscales[{i}].version"), "a string")),
                }
            }
        }
        Ok(Self { version: NgffVersion::V0_4, multiscales: parse_multiscales(ms, "multiscales")? })
    }

    /// Parses an OME-NGFF 0.5 image from its group's `zarr.json` (zarr v3).
    ///
    /// # Errors
    /// `Json`; `ZarrFormat` and `NotAGroup` for a document that is not a v3 group;
    /// `NotAnImage` when there is no `attributes.ome.multiscales`; `UnsupportedVersion`
    /// unless `attributes.ome.version` is `"0.5"`; the structural errors of the module's
    /// checks.
    pub fn from_group_json(bytes: &[u8]) -> Result<Self> {
        let key = "attributes.ome.multiscales";
        let ome = ome_namespace(bytes, key)?;
        let Some(ms) = ome.get("multiscales") else { return Err(NgffError::NotAnImage { key }) };
        check_version(&ome, true)?;
        let multiscales = parse_multiscales(ms, "attributes.ome.multiscales")?;
        Ok(Self { version: NgffVersion::V0_5, multiscales })
    }

    /// The default image: `multiscales[0]` (always present in parsed metadata).
    pub fn image(&self) -> Option<&Multiscale> {
        self.multiscales.first()
    }
}

fn parse_labels(v: &Value, at: &str) -> Result<Vec<String>> {
    list(v, at)?.iter().enumerate().map(|(i, p)| relative_path(p, &format!("{at}[{i}]"))).collect()
}

/// The label images listed by an image's `labels` group: OME-NGFF 0.4, from
/// `labels/.zattrs` (`{"labels": [...]}`).
///
/// # Errors
/// `Json`; `NotAnImage` (naming `labels`) when the key is absent; `WrongType` or
/// `BadPath` for entries that are not relative paths.
pub fn labels_from_zattrs(bytes: &[u8]) -> Result<Vec<String>> {
    let attrs = v2_attributes(bytes)?;
    let Some(v) = attrs.get("labels") else { return Err(NgffError::NotAnImage { key: "labels" }) };
    parse_labels(v, "labels")
}

/// The label images listed by an image's `labels` group: OME-NGFF 0.5, from
/// `labels/zarr.json` (`attributes.ome.labels`).
///
/// # Errors
/// As [`labels_from_zattrs`], plus `ZarrFormat`, `NotAGroup` and `UnsupportedVersion` as
/// for [`ImageMetadata::from_group_json`] (a missing version is accepted here: writers
/// omit it on the labels group).
pub fn labels_from_group_json(bytes: &[u8]) -> Result<Vec<String>> {
    let key = "attributes.ome.labels";
    let ome = ome_namespace(bytes, key)?;
    let Some(v) = ome.get("labels") else { return Err(NgffError::NotAnImage { key }) };
    check_version(&ome, false)?;
    parse_labels(v, "attributes.ome.labels")
}

#[cfg(test)]
mod tests;
