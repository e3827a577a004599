//! Tests of OME-NGFF parsing (ome-zarr-py's own documents, the specs' examples, every
//! refusal) and of the physical ↔ voxel mapping (proptested: covering, tight, round trip).

use super::*;
use proptest::prelude::*;
use serde_json::json;

/// Documents ome-zarr-py 0.18 wrote (`tests/data/ngff/make_ngff_fixtures.py`).
const V04_IMAGE3D: &[u8] = include_bytes!("../../../../tests/data/ngff/v04/image3d.zarr/.zattrs");
const V05_IMAGE5D: &[u8] = include_bytes!("../../../../tests/data/ngff/v05/image5d.zarr/zarr.json");
const V04_LABELS: &[u8] =
    include_bytes!("../../../../tests/data/ngff/v04/image3d.zarr/labels/.zattrs");
const V05_LABELS: &[u8] =
    include_bytes!("../../../../tests/data/ngff/v05/image5d.zarr/labels/zarr.json");
const V05_ARRAY: &[u8] =
    include_bytes!("../../../../tests/data/ngff/v05/image5d.zarr/s0/zarr.json");

fn axis(name: &str, t: Option<AxisType>, unit: Option<&str>) -> Axis {
    Axis { name: name.into(), axis_type: t, unit: unit.map(Into::into) }
}

#[test]
fn parses_ome_zarr_py_0_4_image() {
    let m = ImageMetadata::from_zattrs(V04_IMAGE3D).unwrap();
    assert_eq!(m.version, NgffVersion::V0_4);
    assert_eq!(m.multiscales.len(), 1);
    let ms = m.image().unwrap();
    let um = Some("micrometer");
    assert_eq!(
        ms.axes,
        vec![
            axis("z", Some(AxisType::Space), um),
            axis("y", Some(AxisType::Space), um),
            axis("x", Some(AxisType::Space), um)
        ]
    );
    let paths: Vec<&str> = ms.datasets.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(paths, ["s0", "s1", "s2"]);
    assert_eq!(ms.transform, None);
    let scales: Vec<&[f64]> = ms.datasets.iter().map(|d| &d.level_transform.scale[..]).collect();
    assert_eq!(scales, [&[2.0, 0.5, 0.5][..], &[2.0, 1.0, 1.0], &[2.0, 2.0, 2.0]]);
    let shifts: Vec<&[f64]> =
        ms.datasets.iter().map(|d| &d.level_transform.translation[..]).collect();
    assert_eq!(shifts, [&[0.0, 0.0, 0.0][..], &[0.0, 0.25, 0.25], &[0.0, 0.75, 0.75]]);
    assert_eq!(ms.datasets[1].transform, ms.datasets[1].level_transform);
}

#[test]
fn parses_ome_zarr_py_0_5_image() {
    let m = ImageMetadata::from_group_json(V05_IMAGE5D).unwrap();
    assert_eq!(m.version, NgffVersion::V0_5);
    let ms = m.image().unwrap();
    assert_eq!(ms.name.as_deref(), Some("tczyx"));
    let um = Some("micrometer");
    assert_eq!(
        ms.axes,
        vec![
            axis("t", Some(AxisType::Time), Some("second")),
            axis("c", Some(AxisType::Channel), None),
            axis("z", Some(AxisType::Space), um),
            axis("y", Some(AxisType::Space), um),
            axis("x", Some(AxisType::Space), um),
        ]
    );
    assert_eq!(ms.datasets.len(), 3);
    let last = &ms.datasets[2].level_transform;
    assert_eq!(last.scale, vec![30.0, 1.0, 1.6, 1.0, 1.0]);
    assert_eq!(last.translation, vec![-60.0, 0.0, 4.4, -1.125, 2.625]);
}

#[test]
fn lists_labels_of_both_versions() {
    assert_eq!(labels_from_zattrs(V04_LABELS).unwrap(), vec!["cells".to_owned()]);
    assert_eq!(labels_from_group_json(V05_LABELS).unwrap(), vec!["cells".to_owned()]);
    let nested = json!({"labels": ["orphaned/0", "cells"]}).to_string();
    assert_eq!(labels_from_zattrs(nested.as_bytes()).unwrap(), ["orphaned/0", "cells"]);
    assert_eq!(
        labels_from_zattrs(b"{}"),
        Err(NgffError::NotAnImage { key: "labels" }),
        "a labels group without the list"
    );
    let bad = json!({"labels": ["../up"]}).to_string();
    assert!(matches!(labels_from_zattrs(bad.as_bytes()), Err(NgffError::BadPath { .. })));
    let not_v3 = labels_from_group_json(V04_LABELS);
    assert_eq!(not_v3, Err(NgffError::Missing { at: "zarr_format".into() }));
}

/// A valid 0.4 `.zattrs` with two levels, to be broken one field at a time.
fn doc() -> Value {
    json!({"multiscales": [{
        "version": "0.4",
        "name": "example",
        "axes": [
            {"name": "t", "type": "time", "unit": "millisecond"},
            {"name": "c", "type": "channel"},
            {"name": "z", "type": "space", "unit": "micrometer"},
            {"name": "y", "type": "space", "unit": "micrometer"},
            {"name": "x", "type": "space", "unit": "micrometer"}
        ],
        "datasets": [
            {"path": "0", "coordinateTransformations": [
                {"type": "scale", "scale": [1.0, 1.0, 0.5, 0.5, 0.5]}]},
            {"path": "1", "coordinateTransformations": [
                {"type": "scale", "scale": [1.0, 1.0, 1.0, 1.0, 1.0]},
                {"type": "translation", "translation": [0.0, 0.0, 0.25, 0.25, 0.25]}]}
        ],
        "coordinateTransformations": [{"type": "scale", "scale": [0.1, 1.0, 1.0, 1.0, 1.0]}]
    }]})
}

fn parse(v: &Value) -> Result<ImageMetadata> {
    ImageMetadata::from_zattrs(v.to_string().as_bytes())
}

/// `doc()` with the value at the JSON pointer replaced (or removed with `None`).
fn with(pointer: &str, value: Option<Value>) -> Value {
    let mut d = doc();
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let p = d.pointer_mut(parent).unwrap();
    match (p, value) {
        (Value::Object(o), Some(v)) => {
            o.insert(key.into(), v);
        }
        (Value::Object(o), None) => {
            o.remove(key);
        }
        (Value::Array(a), Some(v)) => {
            let i = key.parse::<usize>().unwrap();
            if i == a.len() { a.push(v) } else { a[i] = v }
        }
        (Value::Array(a), None) => {
            a.remove(key.parse::<usize>().unwrap());
        }
        _ => unreachable!("{pointer}"),
    }
    d
}

#[test]
fn composes_the_multiscale_transformation_after_each_dataset() {
    let m = parse(&doc()).unwrap();
    let ms = m.image().unwrap();
    let outer = ms.transform.clone().unwrap();
    assert_eq!(outer.scale, vec![0.1, 1.0, 1.0, 1.0, 1.0]);
    let l1 = &ms.datasets[1];
    assert_eq!(l1.transform.translation, vec![0.0, 0.0, 0.25, 0.25, 0.25]);
    // (i * s1 + t1) * s2 + t2 on every axis.
    assert_eq!(l1.level_transform.scale, vec![0.1, 1.0, 1.0, 1.0, 1.0]);
    assert_eq!(l1.level_transform.translation, vec![0.0, 0.0, 0.25, 0.25, 0.25]);
    let shifted = with(
        "/multiscales/0/coordinateTransformations",
        Some(json!([
            {"type": "scale", "scale": [2.0, 1.0, 3.0, 1.0, 1.0]},
            {"type": "translation", "translation": [5.0, 0.0, -1.0, 0.0, 0.0]}
        ])),
    );
    let ms = parse(&shifted).unwrap().multiscales.remove(0);
    assert_eq!(ms.datasets[1].level_transform.scale, vec![2.0, 1.0, 3.0, 1.0, 1.0]);
    assert_eq!(ms.datasets[1].level_transform.translation, vec![5.0, 0.0, -0.25, 0.25, 0.25]);
    assert_eq!(ms.datasets[0].level_transform.scale, vec![2.0, 1.0, 1.5, 0.5, 0.5]);
}

#[test]
fn accepts_what_the_0_4_test_suite_calls_valid() {
    // An untyped axis, a custom type, an identity transformation, no version, no name.
    let untyped = with("/multiscales/0/axes/1", Some(json!({"name": "angle"})));
    assert_eq!(parse(&untyped).unwrap().multiscales[0].axes[1].axis_type, None);
    let custom = with("/multiscales/0/axes/1", Some(json!({"name": "a", "type": "custom"})));
    let t = parse(&custom).unwrap().multiscales[0].axes[1].axis_type.clone();
    assert_eq!(t, Some(AxisType::Custom("custom".into())));
    let identity = with(
        "/multiscales/0/datasets/0/coordinateTransformations",
        Some(json!([{"type": "identity"}, {"type": "scale", "scale": [1, 1, 1, 1, 1]}])),
    );
    assert_eq!(parse(&identity).unwrap().multiscales[0].datasets[0].transform.scale, [1.0; 5]);
    let unversioned = parse(&with("/multiscales/0/version", None)).unwrap();
    assert_eq!(unversioned.version, NgffVersion::V0_4);
    let unnamed = parse(&with("/multiscales/0/name", None)).unwrap();
    assert_eq!(unnamed.multiscales[0].name, None);
    let two_d = json!({"multiscales": [{"axes": [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
        "datasets": [{"path": "path/to/0", "coordinateTransformations": [{"type": "scale", "scale": [0.13, 0.13]}]}]}]});
    assert_eq!(parse(&two_d).unwrap().multiscales[0].datasets[0].path, "path/to/0");
}

#[test]
fn refuses_each_violation_with_its_own_error() {
    use NgffError as E;
    let ax = "/multiscales/0/axes";
    let ds = "/multiscales/0/datasets";
    let space = |n: &str| json!({"name": n, "type": "space"});
    /// What is broken, the document, and the error it must give.
    type Case = (&'static str, Value, fn(&NgffError) -> bool);
    let cases: Vec<Case> = vec![
        ("no multiscales", json!({"omero": {}}), |e| {
            matches!(e, E::NotAnImage { key: "multiscales" })
        }),
        (
            "version 0.3",
            with("/multiscales/0/version", Some(json!("0.3"))),
            |e| matches!(e, E::UnsupportedVersion { version } if version == "0.3"),
        ),
        (
            "no axes",
            with(ax, None),
            |e| matches!(e, E::Missing { at } if at == "multiscales[0].axes"),
        ),
        ("one axis", with(ax, Some(json!([space("x")]))), |e| {
            matches!(e, E::AxisCount { count: 1, .. })
        }),
        (
            "six axes",
            with(
                ax,
                Some(json!([{"name": "a", "type": "custom"}, {"name": "t", "type": "time"},
                {"name": "c", "type": "channel"}, space("z"), space("y"), space("x")])),
            ),
            |e| matches!(e, E::AxisCount { count: 6, .. }),
        ),
        (
            "duplicate name",
            with(&format!("{ax}/3"), Some(space("x"))),
            |e| matches!(e, E::DuplicateAxis { name, .. } if name == "x"),
        ),
        (
            "nameless axis",
            with(&format!("{ax}/3"), Some(json!({"type": "space"}))),
            |e| matches!(e, E::Missing { at } if at == "multiscales[0].axes[3].name"),
        ),
        (
            "one space axis",
            with(
                ax,
                Some(
                    json!([{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}, space("x")]),
                ),
            ),
            |e| matches!(e, E::SpaceAxisCount { count: 1, .. }),
        ),
        (
            "space before time",
            with(
                ax,
                Some(json!([space("z"), {"name": "t", "type": "time"}, space("y"), space("x")])),
            ),
            |e| matches!(e, E::AxisOrder { name, kind: "time", after: "space", .. } if name == "t"),
        ),
        (
            "two channel-like axes",
            with(
                ax,
                Some(
                    json!([{"name": "c", "type": "channel"}, {"name": "a"}, space("y"), space("x")]),
                ),
            ),
            |e| matches!(e, E::AxisKindCount { count: 2, .. }),
        ),
        (
            "unit not a string",
            with(&format!("{ax}/2/unit"), Some(json!(3))),
            |e| matches!(e, E::WrongType { at, .. } if at == "multiscales[0].axes[2].unit"),
        ),
        ("empty datasets", with(ds, Some(json!([]))), |e| matches!(e, E::Empty { .. })),
        (
            "no path",
            with(&format!("{ds}/1/path"), None),
            |e| matches!(e, E::Missing { at } if at == "multiscales[0].datasets[1].path"),
        ),
        ("numeric path", with(&format!("{ds}/1/path"), Some(json!(0))), |e| {
            matches!(e, E::WrongType { .. })
        }),
        (
            "path up",
            with(&format!("{ds}/1/path"), Some(json!("../other/0"))),
            |e| matches!(e, E::BadPath { path, .. } if path == "../other/0"),
        ),
        ("absolute path", with(&format!("{ds}/1/path"), Some(json!("/data/0"))), |e| {
            matches!(e, E::BadPath { .. })
        }),
        ("no transformations", with(&format!("{ds}/0/coordinateTransformations"), None), |e| {
            matches!(e, E::Missing { .. })
        }),
        ("no scale", with(&format!("{ds}/0/coordinateTransformations"), Some(json!([]))), |e| {
            matches!(e, E::TransformCount { kind: "scale", count: 0, .. })
        }),
        (
            "two scales",
            with(
                &format!("{ds}/0/coordinateTransformations"),
                Some(json!([
                {"type": "scale", "scale": [1, 1, 1, 1, 1]}, {"type": "scale", "scale": [1, 1, 1, 1, 1]}])),
            ),
            |e| matches!(e, E::TransformCount { kind: "scale", count: 2, .. }),
        ),
        (
            "two translations",
            with(
                &format!("{ds}/1/coordinateTransformations/2"),
                Some(json!(
                {"type": "translation", "translation": [0, 0, 0, 0, 0]})),
            ),
            |e| matches!(e, E::TransformCount { kind: "translation", count: 2, .. }),
        ),
        (
            "translation first",
            with(
                &format!("{ds}/0/coordinateTransformations"),
                Some(json!([
                {"type": "translation", "translation": [0, 0, 0, 0, 0]}, {"type": "scale", "scale": [1, 1, 1, 1, 1]}])),
            ),
            |e| matches!(e, E::TranslationBeforeScale { .. }),
        ),
        (
            "affine",
            with(&format!("{ds}/0/coordinateTransformations/0/type"), Some(json!("affine"))),
            |e| matches!(e, E::TransformType { found, .. } if found == "affine"),
        ),
        (
            "binary scale",
            with(
                &format!("{ds}/0/coordinateTransformations/0"),
                Some(json!({"type": "scale", "path": "s.bin"})),
            ),
            |e| matches!(e, E::TransformByPath { .. }),
        ),
        (
            "short scale",
            with(&format!("{ds}/0/coordinateTransformations/0/scale"), Some(json!([1, 1]))),
            |e| matches!(e, E::TransformLength { len: 2, axes: 5, .. }),
        ),
        (
            "string in scale",
            with(&format!("{ds}/0/coordinateTransformations/0/scale/4"), Some(json!("1"))),
            |e| matches!(e, E::WrongType { at, .. } if at == "multiscales[0].datasets[0].coordinateTransformations[0].scale[4]"),
        ),
        (
            "zero scale",
            with(&format!("{ds}/0/coordinateTransformations/0/scale/3"), Some(json!(0.0))),
            |e| matches!(e, E::ZeroScale { axis: 3, .. }),
        ),
        (
            "bad multiscale transformation",
            with(
                "/multiscales/0/coordinateTransformations",
                Some(json!([{"type": "translation", "translation": [0, 0, 0, 0, 0]}])),
            ),
            |e| matches!(e, E::TransformCount { kind: "scale", count: 0, .. }),
        ),
        (
            "composition underflows",
            {
                let tiny = json!([{"type": "scale", "scale": [1e-200, 1, 1, 1, 1]}]);
                let mut d = with("/multiscales/0/coordinateTransformations", Some(tiny));
                let at = "/multiscales/0/datasets/0/coordinateTransformations/0/scale/0";
                *d.pointer_mut(at).unwrap() = json!(1e-200);
                d
            },
            |e| matches!(e, E::ZeroScale { axis: 0, .. }),
        ),
        ("not an object", json!([1, 2]), |e| matches!(e, E::WrongType { .. })),
    ];
    for (what, d, expected) in cases {
        let got = parse(&d);
        assert!(matches!(&got, Err(e) if expected(e)), "{what}: got {got:?}");
        // Every refusal's message names where the problem is.
        let text = got.unwrap_err().to_string();
        assert!(!text.is_empty(), "{what}");
    }
    let e = ImageMetadata::from_zattrs(b"{\"multiscales\": [").unwrap_err();
    assert!(matches!(e, NgffError::Json { line: 1, .. }), "{e:?}");
}

fn v05(ome: Value) -> Vec<u8> {
    json!({"zarr_format": 3, "node_type": "group", "attributes": {"ome": ome}})
        .to_string()
        .into_bytes()
}

#[test]
fn version_0_5_lives_in_a_v3_group_under_ome() {
    let ms = doc()["multiscales"].clone();
    let mut m0 = ms.clone();
    m0[0].as_object_mut().unwrap().remove("version");
    let ok =
        ImageMetadata::from_group_json(&v05(json!({"version": "0.5", "multiscales": m0}))).unwrap();
    assert_eq!(ok.version, NgffVersion::V0_5);
    assert_eq!(ok.multiscales[0].datasets.len(), 2);

    let e = |b: &[u8]| ImageMetadata::from_group_json(b).unwrap_err();
    assert_eq!(e(V05_ARRAY), NgffError::NotAGroup { node_type: "array".into() });
    assert_eq!(e(V04_IMAGE3D), NgffError::Missing { at: "zarr_format".into() });
    let v2 = json!({"zarr_format": 2, "node_type": "group"}).to_string();
    assert_eq!(e(v2.as_bytes()), NgffError::ZarrFormat { found: "2".into() });
    let plain = json!({"zarr_format": 3, "node_type": "group"}).to_string();
    assert!(matches!(e(plain.as_bytes()), NgffError::NotAnImage { .. }));
    let old_style =
        json!({"zarr_format": 3, "node_type": "group", "attributes": {"multiscales": ms}});
    assert!(matches!(e(old_style.to_string().as_bytes()), NgffError::NotAnImage { .. }));
    let v04 = v05(json!({"version": "0.4", "multiscales": m0}));
    assert_eq!(e(&v04), NgffError::UnsupportedVersion { version: "0.4".into() });
    let unversioned = v05(json!({"multiscales": m0}));
    assert_eq!(e(&unversioned), NgffError::Missing { at: "attributes.ome.version".into() });
    // A labels group (no multiscales, no version) is a group, not an image.
    assert_eq!(e(V05_LABELS), NgffError::NotAnImage { key: "attributes.ome.multiscales" });
    let no_ms = v05(json!({"version": "0.5"}));
    assert_eq!(e(&no_ms), NgffError::NotAnImage { key: "attributes.ome.multiscales" });
    // What is no image's metadata at all, as opposed to an image's broken metadata.
    for not_image in [e(V05_ARRAY), e(V04_IMAGE3D), e(b"[1]"), e(b"{"), e(V05_LABELS)] {
        assert!(not_image.is_not_an_image(), "{not_image:?}");
    }
    assert!(e(&no_ms).is_not_an_image());
    assert!(!e(&v04).is_not_an_image() && !e(&unversioned).is_not_an_image());
    assert!(
        !parse(&with("/multiscales/0/datasets", Some(json!([])))).unwrap_err().is_not_an_image()
    );
    // 0.4 metadata is never read from a v3 group, nor 0.5 from .zattrs.
    assert!(matches!(ImageMetadata::from_zattrs(V05_IMAGE5D), Err(NgffError::NotAnImage { .. })));
}

#[test]
fn maps_fixture_levels_between_physical_and_voxel_boxes() {
    let m = ImageMetadata::from_zattrs(V04_IMAGE3D).unwrap();
    let ms = m.image().unwrap();
    let (l0, l1) = (&ms.datasets[0].level_transform, &ms.datasets[1].level_transform);
    // Level-0 voxels z 0..16, y 4..12, x 8..20 occupy this physical box...
    let p = l0.physical_box(&[0, 4, 8], &[16, 12, 20]).unwrap();
    assert_eq!(p.lo, vec![-1.0, 1.75, 3.75]);
    assert_eq!(p.hi, vec![31.0, 5.75, 9.75]);
    // ...which level 1 (y and x halved, half-voxel shifts) covers with exactly half the voxels.
    let v = l1.voxel_box(&p.lo, &p.hi).unwrap();
    assert_eq!(v, VoxelBox { lo: vec![0, 2, 4], hi: vec![16, 6, 10] });
    assert_eq!(
        l1.voxel_aabb(&p.lo, &p.hi, &[16, 16, 14]).unwrap(),
        Aabb { lo: vec![0, 2, 4].into(), hi: vec![16, 6, 10].into() }
    );
    // A box straddling voxel faces rounds outwards.
    let v = l1.voxel_box(&[0.0, 2.0, 2.0], &[2.1, 3.0, 2.5]).unwrap();
    assert_eq!(v, VoxelBox { lo: vec![0, 2, 2], hi: vec![2, 4, 3] });
    assert_eq!(
        l1.voxel_aabb(&p.lo, &p.hi, &[16, 5, 14]),
        Err(NgffError::OutsideLevel { axis: 1, lo: 2, hi: 6, extent: 5 })
    );
    assert_eq!(
        l1.voxel_aabb(&[-5.0, 2.0, 2.0], &[1.0, 3.0, 3.0], &[16, 16, 14]),
        Err(NgffError::OutsideLevel { axis: 0, lo: -2, hi: 1, extent: 16 })
    );
    assert_eq!(l1.voxel_box(&[0.0; 2], &[1.0; 2]), Err(NgffError::BoxRank { expected: 3, got: 2 }));
    assert!(matches!(
        l1.voxel_box(&[0.0, 1.0, 1.0], &[1.0, 1.0, 2.0]),
        Err(NgffError::EmptyBox { axis: 1, .. })
    ));
    assert!(matches!(
        l1.voxel_box(&[0.0, f64::NAN, 1.0], &[1.0, 1.0, 2.0]),
        Err(NgffError::EmptyBox { axis: 1, .. })
    ));
    assert_eq!(
        l1.voxel_box(&[0.0, 0.0, 0.0], &[1e300, 1.0, 1.0]),
        Err(NgffError::Imprecise { axis: 0 })
    );
    assert_eq!(l1.to_physical(&[1.0, 1.0, 1.0]).unwrap(), vec![2.0, 1.25, 1.25]);
    // Far from the origin f64 cannot resolve voxels: refused, not rounded anywhere.
    let far = ScaleTranslation { scale: vec![1.0], translation: vec![8_007_199_254_740_993.0] };
    let p = far.physical_box(&[0], &[1]).unwrap();
    assert_eq!(far.voxel_box(&p.lo, &p.hi), Err(NgffError::Imprecise { axis: 0 }));
}

/// Voxel index `i`'s low face along one axis (its high face for a negative scale).
fn face(i: f64, s: f64, t: f64) -> f64 {
    (i - 0.5) * s + t
}

fn scale() -> impl Strategy<Value = f64> {
    (1e-3f64..1e3, any::<bool>()).prop_map(|(s, neg)| if neg { -s } else { s })
}

proptest! {
    /// The voxel box covers the physical box, and is the smallest that does: dropping its
    /// first or last voxel uncovers part of the physical box (up to rounding).
    #[test]
    fn voxel_box_covers_tightly(s in scale(), t in -1e4f64..1e4, lo in -1e5f64..1e5, width in 1e-6f64..1e4) {
        let tr = ScaleTranslation { scale: vec![s], translation: vec![t] };
        let hi = lo + width;
        let v = tr.voxel_box(&[lo], &[hi]).unwrap();
        let (a, b) = (v.lo[0] as f64, v.hi[0] as f64);
        prop_assert!(a < b);
        let (f0, f1) = (face(a, s, t), face(b, s, t));
        let (pmin, pmax) = (f0.min(f1), f0.max(f1));
        let tol = 1e-9 * (1.0 + lo.abs() + hi.abs() + t.abs());
        prop_assert!(pmin <= lo + tol && pmax >= hi - tol, "{a}..{b} spans {pmin}..{pmax}, box {lo}..{hi}");
        // One voxel fewer at either end no longer covers the box.
        let (g0, g1) = (face(a + 1.0, s, t), face(b - 1.0, s, t));
        let (low_end, high_end) = if s > 0.0 { (g0, g1) } else { (g1, g0) };
        prop_assert!(low_end > lo - tol, "dropping voxel {a} still covers {lo}");
        prop_assert!(high_end < hi + tol, "dropping voxel {} still covers {hi}", b - 1.0);
    }

    /// Voxels → physical box → voxels is the identity, in any rank.
    #[test]
    fn voxel_boxes_round_trip(
        axes in proptest::collection::vec((scale(), -1e4f64..1e4, 0u64..1_000_000, 1u64..10_000), 1..6)
    ) {
        let tr = ScaleTranslation {
            scale: axes.iter().map(|a| a.0).collect(),
            translation: axes.iter().map(|a| a.1).collect(),
        };
        let lo: Vec<u64> = axes.iter().map(|a| a.2).collect();
        let hi: Vec<u64> = axes.iter().map(|a| a.2 + a.3).collect();
        let p = tr.physical_box(&lo, &hi).unwrap();
        let v = tr.voxel_box(&p.lo, &p.hi).unwrap();
        let as_i64 = |x: &[u64]| x.iter().map(|&x| x as i64).collect::<Vec<_>>();
        prop_assert_eq!(v, VoxelBox { lo: as_i64(&lo), hi: as_i64(&hi) });
    }

    /// The parsers return for any bytes, and for any mutation of a valid document.
    #[test]
    fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = ImageMetadata::from_zattrs(&bytes);
        let _ = ImageMetadata::from_group_json(&bytes);
        let _ = labels_from_zattrs(&bytes);
        let _ = labels_from_group_json(&bytes);
    }

    #[test]
    fn mutated_documents_never_panic(at in 0usize..4096, byte in any::<u8>(), cut in any::<bool>()) {
        for base in [V04_IMAGE3D, V05_IMAGE5D] {
            let mut b = base.to_vec();
            let i = at % b.len();
            if cut { b.truncate(i) } else { b[i] = byte }
            let _ = ImageMetadata::from_zattrs(&b);
            let _ = ImageMetadata::from_group_json(&b);
        }
    }
}
