//! OME-NGFF images end to end: every level's crops of ome-zarr-py's images read through
//! the pipeline (samples naming the image group and a level) equal the values the writer
//! stored; `Image::open` lists the levels, axes, scale, translation and labels written;
//! image failures reach `pop` typed and naming the file; images read through S3 and HTTP
//! as through files. The 0.4 images' levels are zarr v2 arrays: their reads are in
//! `images_v04.rs`.

use std::path::{Path, PathBuf};

use damacy::ngff::{AxisType, NgffVersion};
use damacy::{
    Config, Error, Image, ImageError, ObjectStoreConfig, OnError, OutDtype, Pipeline, Sample,
    SampleError,
};
use loopback::{BUCKET, HttpServer, S3Server};
use serde_json::Value;

use crate::object_stores::s3_options;
use crate::support::{data_dir, npy_native, sub_box};

/// One crop of a level and its `.npy`.
#[derive(Debug, Clone)]
pub struct LevelCrop {
    pub lo: Vec<u64>,
    pub hi: Vec<u64>,
    pub npy: PathBuf,
}

/// A level as `tests/data/ngff/manifest.json` records what the writer wrote.
#[derive(Debug, Clone)]
pub struct WrittenLevel {
    pub path: String,
    pub shape: Vec<u64>,
    pub dtype: String,
    pub chunks: Vec<u64>,
    pub scale: Vec<f64>,
    pub translation: Vec<f64>,
    pub crops: Vec<LevelCrop>,
}

#[derive(Debug, Clone)]
pub struct WrittenImage {
    pub name: String,
    /// Relative to `tests/data/ngff`.
    pub rel: String,
    pub path: PathBuf,
    pub multiscale_name: Option<String>,
    pub axes: Value,
    pub levels: Vec<WrittenLevel>,
    pub labels: Vec<String>,
}

/// `tests/data/ngff`, without `..` (uris are normalized lexically, so the expected paths
/// must be too).
pub fn ngff_dir() -> PathBuf {
    let dir = data_dir().join("ngff");
    std::fs::canonicalize(&dir).unwrap_or(dir)
}

fn u64s(v: &Value) -> Vec<u64> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_u64).collect()).unwrap_or_default()
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_f64).collect()).unwrap_or_default()
}

/// The images of one OME-NGFF version ("0.4" or "0.5").
pub fn written_images(version: &str) -> Vec<WrittenImage> {
    let dir = ngff_dir();
    let text = std::fs::read_to_string(dir.join("manifest.json")).expect("ngff manifest");
    let m: Value = serde_json::from_str(&text).expect("manifest is JSON");
    let images: Vec<WrittenImage> = m["images"]
        .as_array()
        .expect("images")
        .iter()
        .filter(|i| i["version"] == version)
        .map(|i| WrittenImage {
            name: i["name"].as_str().unwrap_or_default().to_owned(),
            rel: i["path"].as_str().unwrap_or_default().to_owned(),
            path: dir.join(i["path"].as_str().unwrap_or_default()),
            multiscale_name: i["multiscale_name"].as_str().map(str::to_owned),
            axes: i["axes"].clone(),
            levels: i["levels"]
                .as_array()
                .expect("levels")
                .iter()
                .map(|l| WrittenLevel {
                    path: l["path"].as_str().unwrap_or_default().to_owned(),
                    shape: u64s(&l["shape"]),
                    dtype: l["dtype"].as_str().unwrap_or_default().to_owned(),
                    chunks: u64s(&l["chunks"]),
                    scale: f64s(&l["scale"]),
                    translation: f64s(&l["translation"]),
                    crops: l["crops"]
                        .as_array()
                        .expect("crops")
                        .iter()
                        .map(|c| LevelCrop {
                            lo: u64s(&c["lo"]),
                            hi: u64s(&c["hi"]),
                            npy: dir.join(c["npy"].as_str().unwrap_or_default()),
                        })
                        .collect(),
                })
                .collect(),
            labels: i["labels"]
                .as_array()
                .expect("labels")
                .iter()
                .filter_map(|l| l.as_str().map(str::to_owned))
                .collect(),
        })
        .collect();
    assert!(images.len() >= 2, "the manifest has a 3-D and a 5-D image of version {version}");
    images
}

fn config(shape: &[u64], batch: usize, objects: &ObjectStoreConfig) -> Config {
    Config::builder()
        .sample_shape(shape)
        .samples_per_batch(batch)
        .dtype(OutDtype::Native)
        .decode_threads(1)
        .io_threads(1)
        .max_shards_per_sample(4096)
        .on_error(OnError::Fail)
        .object_store(objects.clone())
        .build()
        .expect("config")
}

/// Reads samples of one shape as one batch.
fn read_batch(samples: Vec<Sample>, objects: &ObjectStoreConfig) -> damacy::Result<Vec<u8>> {
    let shape = samples[0].aabb().shape();
    let mut p = Pipeline::new(config(&shape, samples.len(), objects))?;
    p.push(samples)?;
    p.finish();
    let batch = p.pop()?.expect("one batch");
    assert!(p.pop()?.is_none(), "exactly one batch");
    Ok(batch.data()?.to_vec())
}

/// Every crop of every level of every image of `version`, through `base/<image path>`
/// (a directory or an object-store uri); returns the number of crops checked.
pub fn every_level_crop_through(version: &str, base: &str, objects: &ObjectStoreConfig) -> usize {
    let mut checked = 0;
    for image in written_images(version) {
        let uri = format!("{base}/{}", image.rel);
        for (level, l) in image.levels.iter().enumerate() {
            for (k, c) in l.crops.iter().enumerate() {
                let s = Sample::new(&uri, c.lo.clone(), c.hi.clone()).unwrap().level(level);
                let got = read_batch(vec![s], objects)
                    .unwrap_or_else(|e| panic!("{uri} level {level} crop {k}: {e}"));
                let (dtype, shape, want) = npy_native(&c.npy);
                assert_eq!(dtype, l.dtype, "{uri} level {level}: npy dtype");
                assert_eq!(shape, c.lo.iter().zip(&c.hi).map(|(a, b)| b - a).collect::<Vec<_>>());
                assert!(
                    got == want,
                    "{uri} level {level} crop {k}: values differ from the writer's"
                );
                checked += 1;
            }
        }
    }
    checked
}

/// `Image::open` of every image of `version` lists what the writer wrote.
pub fn listing_matches_the_metadata_written(version: &str) {
    for w in written_images(version) {
        let image = Image::open(&w.path, &ObjectStoreConfig::default())
            .unwrap_or_else(|e| panic!("{}: {e}", w.path.display()));
        let expected = if version == "0.4" { NgffVersion::V0_4 } else { NgffVersion::V0_5 };
        assert_eq!(image.version(), expected, "{}", w.name);
        assert_eq!(image.name(), w.multiscale_name.as_deref());
        let axes = w.axes.as_array().expect("axes");
        assert_eq!(image.axes().len(), axes.len());
        for (got, want) in image.axes().iter().zip(axes) {
            assert_eq!(got.name, want["name"].as_str().unwrap());
            assert_eq!(got.axis_type.as_ref().map(AxisType::as_str), want["type"].as_str());
            assert_eq!(got.unit.as_deref(), want["unit"].as_str());
        }
        assert_eq!(image.levels().len(), w.levels.len());
        assert!(image.levels().len() >= 3, "{}: at least three levels", w.name);
        for (i, (got, want)) in image.levels().iter().zip(&w.levels).enumerate() {
            assert_eq!(got.index(), i);
            assert_eq!(got.path(), want.path);
            assert_eq!(got.uri(), w.path.join(&want.path));
            assert_eq!(got.shape(), want.shape, "{} level {i}", w.name);
            assert_eq!(got.dtype().name(), damacy::DataType::parse(&want.dtype).unwrap().name());
            assert_eq!(got.chunks(), want.chunks, "{} level {i}", w.name);
            assert_eq!(got.scale(), want.scale, "{} level {i}", w.name);
            assert_eq!(got.translation(), want.translation, "{} level {i}", w.name);
        }
        assert_eq!(image.labels(), w.labels);
        assert_eq!(image.label_uri("cells"), w.path.join("labels/cells"));
    }
}

#[test]
fn every_0_5_level_crop_equals_the_writers_values() {
    let checked =
        every_level_crop_through("0.5", &ngff_dir().display().to_string(), &Default::default());
    // 2 images × 3 levels × 3 crops.
    assert_eq!(checked, 18);
}

#[test]
fn image_open_lists_what_ome_zarr_py_wrote_in_0_5() {
    listing_matches_the_metadata_written("0.5");
}

/// Samples of several levels (and the group's default level 0) share one batch, each
/// read from its own level.
#[test]
fn one_batch_mixes_levels_of_one_image() {
    let image = written_images("0.5").into_iter().find(|i| i.name == "image3d").unwrap();
    let (lo, hi) = (vec![2u64, 1, 3], vec![10u64, 5, 7]);
    let mut samples: Vec<Sample> = (0..3)
        .map(|level| Sample::new(&image.path, lo.clone(), hi.clone()).unwrap().level(level))
        .collect();
    samples.push(Sample::new(&image.path, lo.clone(), hi.clone()).unwrap());
    let got = read_batch(samples, &Default::default()).unwrap();
    let mut want = Vec::new();
    for level in [0, 1, 2, 0] {
        // Crop 0 of each level is the whole level.
        let (_, shape, full) = npy_native(&image.levels[level].crops[0].npy);
        want.extend(sub_box(&full, &shape, 2, &lo, &hi));
    }
    assert!(got == want, "a sample was read from the wrong level");
}

/// A physical box mapped to a coarse level's voxels reads the same region as the fine
/// level, downsampled: here ome-zarr-py's level 1 of `image3d` (y and x halved).
#[test]
fn a_physical_box_maps_to_the_voxels_of_each_level() {
    let w = written_images("0.5").into_iter().find(|i| i.name == "image3d").unwrap();
    let image = Image::open(&w.path, &ObjectStoreConfig::default()).unwrap();
    let fine = &image.levels()[0];
    let region = damacy::Aabb::new(vec![4, 8, 4], vec![12, 24, 20]).unwrap();
    let p = fine.physical_box(&region).unwrap();
    assert_eq!((p.lo.clone(), p.hi.clone()), (vec![7.0, 3.75, 1.75], vec![23.0, 11.75, 9.75]));
    assert_eq!(fine.voxel_box(&p.lo, &p.hi).unwrap(), region, "level 0 maps back to itself");
    let coarse = image.levels()[1].voxel_box(&p.lo, &p.hi).unwrap();
    assert_eq!(coarse, damacy::Aabb::new(vec![4, 4, 2], vec![12, 12, 10]).unwrap());
    let outside = image.levels()[2].voxel_box(&[0.0, 0.0, 0.0], &[1e4, 1.0, 1.0]);
    assert!(
        matches!(&outside, Err(Error::PhysicalBox { level: 2, source, .. })
            if matches!(**source, damacy::ngff::NgffError::OutsideLevel { axis: 0, extent: 16, .. })),
        "{outside:?}"
    );
    let s = image.sample(1, coarse.lo.to_vec(), coarse.hi.to_vec()).unwrap();
    assert_eq!(s.image_level(), Some(1));
    let got = read_batch(vec![s], &Default::default()).unwrap();
    let (_, shape, full) = npy_native(&w.levels[1].crops[0].npy);
    assert_eq!(got, sub_box(&full, &shape, 2, &coarse.lo, &coarse.hi));
}

fn sample_error(r: damacy::Result<Vec<u8>>) -> SampleError {
    match r {
        Err(Error::Sample { source, .. }) => *source,
        other => panic!("expected a sample error, got {other:?}"),
    }
}

/// Image failures surface at `pop` as `SampleError::Image`, naming the metadata file;
/// 0.4 and 0.5 alike (neither needs a level array read here).
#[test]
fn image_failures_reach_pop_typed_and_naming_the_file() {
    let os = ObjectStoreConfig::default();
    for version in ["0.4", "0.5"] {
        let image = written_images(version).into_iter().find(|i| i.name == "image3d").unwrap();
        let s = Sample::new(&image.path, vec![0; 3], vec![1; 3]).unwrap().level(3);
        let e = sample_error(read_batch(vec![s], &os));
        let file = image.path.join(if version == "0.4" { ".zattrs" } else { "zarr.json" });
        assert_eq!(
            e.to_string(),
            format!("{}: level 3 does not exist: the image has 3 levels (0..=2)", file.display())
        );
        assert!(matches!(e, SampleError::Image(ImageError::LevelOutOfRange { levels: 3, .. })));
    }
    let image = written_images("0.5").into_iter().find(|i| i.name == "image3d").unwrap();
    // A level on an array, and the labels group (a group, not an image).
    let s0 = image.path.join("s0");
    let e = sample_error(read_batch(
        vec![Sample::new(&s0, vec![0; 3], vec![1; 3]).unwrap().level(0)],
        &os,
    ));
    assert!(matches!(e, SampleError::Image(ImageError::LevelOnArray { level: 0, .. })), "{e:?}");
    let labels = image.path.join("labels");
    let e =
        sample_error(read_batch(vec![Sample::new(&labels, vec![0; 3], vec![1; 3]).unwrap()], &os));
    assert!(
        matches!(&e, SampleError::Image(ImageError::NotAnImage { key, .. }) if key.ends_with("labels/zarr.json")),
        "{e:?}"
    );
    // Opening an array or a missing path as an image says which.
    let e = Image::open(&s0, &os).unwrap_err();
    assert!(
        matches!(&e, Error::Image { source, .. } if matches!(**source, SampleError::Image(ImageError::NotAnImage { .. }))),
        "{e:?}"
    );
    let e = Image::open(image.path.join("nothing"), &os).unwrap_err();
    assert!(e.to_string().contains("no image group here"), "{e}");
}

/// Through S3 and HTTP, images resolve and read as through files (the level is found
/// through the same store as the data).
#[test]
fn images_read_through_s3_and_http() {
    let server = S3Server::serve(&ngff_dir()).unwrap();
    let base = format!("s3://{BUCKET}");
    assert_eq!(every_level_crop_through("0.5", &base, &s3_options(&server)), 18);
    let image = Image::open(format!("{base}/v05/image5d.zarr"), &s3_options(&server)).unwrap();
    assert_eq!(image.levels()[2].shape(), [2, 2, 2, 4, 3]);
    assert_eq!(image.labels(), ["cells"]);
    let http = HttpServer::serve(&ngff_dir()).unwrap();
    let os = ObjectStoreConfig { max_retries: 2, ..Default::default() };
    let uri = format!("{}/v05/image3d.zarr", http.endpoint());
    let image = Image::open(&uri, &os).unwrap();
    assert_eq!(image.levels()[1].uri(), Path::new(&format!("{uri}/s1")));
    let s = image.sample(2, vec![0, 0, 0], vec![16, 8, 7]).unwrap();
    let got = read_batch(vec![s], &os).unwrap();
    let w = written_images("0.5").into_iter().find(|i| i.name == "image3d").unwrap();
    assert_eq!(got, npy_native(&w.levels[2].crops[0].npy).2);
}
