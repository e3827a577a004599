//! `damacy inspect` on an OME-NGFF image group: its levels (path, shape, dtype, chunks,
//! scale, translation), axes and labels. A uri that is not an image (an array, or nothing)
//! is left to the array inspection.

use anyhow::Result;
use damacy::{Error, Image, ImageError, SampleError};
use serde_json::json;

/// Prints the image at `uri` and returns true, or returns false when `uri` is not an
/// image group (so the caller inspects it as an array).
///
/// # Errors
/// A broken image (malformed metadata, a level path holding no array, a failed read).
pub(crate) fn inspect(uri: &str, object: &crate::ObjectArgs, as_json: bool) -> Result<bool> {
    let path = crate::array_uri(uri)?;
    let image = match Image::open(&path, &object.config()?) {
        Ok(image) => image,
        Err(Error::Image { source, .. })
            if matches!(
                *source,
                SampleError::Image(ImageError::NotAnImage { .. } | ImageError::NotFound { .. })
            ) =>
        {
            return Ok(false);
        }
        Err(e) => return Err(e.into()),
    };
    if as_json {
        println!("{}", serde_json::to_string_pretty(&to_json(&image))?);
    } else {
        print_text(&image);
    }
    Ok(true)
}

fn to_json(image: &Image) -> serde_json::Value {
    let axes: Vec<_> = image
        .axes()
        .iter()
        .map(|a| json!({"name": a.name, "type": a.axis_type.as_ref().map(|t| t.as_str()), "unit": a.unit}))
        .collect();
    let levels: Vec<_> = image
        .levels()
        .iter()
        .map(|l| {
            json!({
                "path": l.path(),
                "uri": l.uri(),
                "shape": l.shape(),
                "dtype": l.dtype().name(),
                "chunks": l.chunks(),
                "shard_shape": l.shard_shape(),
                "scale": l.scale(),
                "translation": l.translation(),
            })
        })
        .collect();
    json!({
        "image": image.uri(),
        "version": image.version().as_str(),
        "metadata": image.metadata_file(),
        "name": image.name(),
        "axes": axes,
        "levels": levels,
        "labels": image.labels(),
    })
}

fn print_text(image: &Image) {
    println!("image       {} (OME-NGFF {})", image.uri().display(), image.version());
    println!("metadata    {}", image.metadata_file().display());
    if let Some(name) = image.name() {
        println!("name        {name}");
    }
    let axes: Vec<String> = image
        .axes()
        .iter()
        .map(|a| {
            let kind = a.axis_type.as_ref().map_or("untyped", |t| t.as_str());
            match &a.unit {
                Some(u) => format!("{} ({kind}, {u})", a.name),
                None => format!("{} ({kind})", a.name),
            }
        })
        .collect();
    println!("axes        {}", axes.join(", "));
    for l in image.levels() {
        let shards = l.shard_shape().map(|s| format!(" shards {s:?}")).unwrap_or_default();
        println!(
            "level {:<5} {}: shape {:?} {} chunks {:?}{shards} scale {:?} translation {:?}",
            l.index(),
            l.path(),
            l.shape(),
            l.dtype(),
            l.chunks(),
            l.scale(),
            l.translation()
        );
    }
    if image.labels().is_empty() {
        println!("labels      none");
    } else {
        println!("labels      {}", image.labels().join(", "));
    }
}
