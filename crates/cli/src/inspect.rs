//! `damacy inspect`: what an array is and how it is stored.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::json;
use zarr::odometer::advance;
use zarr::{ArrayGeometry, ArrayMetadata, ArrayToBytes, BytesToBytes, CodecChain};

#[derive(clap::Args, Debug)]
pub(crate) struct InspectArgs {
    /// The array's directory (the one holding zarr.json).
    array: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Shards whose presence is counted by stat-ing every key; larger grids report only
/// their size.
const MAX_SHARDS_COUNTED: u64 = 1 << 16;

fn chain_summary(c: &CodecChain) -> String {
    let mut parts: Vec<String> = c
        .array_to_array
        .iter()
        .map(|a| match a {
            zarr::ArrayToArray::Transpose { order } => format!("transpose{order:?}"),
        })
        .collect();
    parts.push(match &c.array_to_bytes {
        ArrayToBytes::Bytes { endian } => match endian {
            Some(zarr::Endian::Big) => "bytes(big)".into(),
            Some(zarr::Endian::Little) => "bytes(little)".into(),
            None => "bytes".into(),
        },
        ArrayToBytes::Sharding(s) => format!(
            "sharding_indexed(chunk_shape={:?}, index at {:?}, inner: {})",
            s.chunk_shape,
            s.index_location,
            chain_summary(&s.codecs)
        ),
    });
    parts.extend(c.bytes_to_bytes.iter().map(|b| match b {
        BytesToBytes::Zstd { level, checksum } => {
            format!("zstd(level={level}, checksum={checksum})")
        }
        BytesToBytes::Blosc { cname, clevel, shuffle, .. } => {
            format!("blosc({cname:?}, clevel={clevel}, {shuffle:?})")
        }
        BytesToBytes::Gzip { level } => format!("gzip(level={level})"),
        BytesToBytes::Crc32c => "crc32c".into(),
    }));
    parts.join(" -> ")
}

pub(crate) fn inspect(args: &InspectArgs) -> Result<()> {
    let path = args.array.join("zarr.json");
    if !path.exists() && args.array.join(".zarray").exists() {
        anyhow::bail!(
            "{}: {}",
            args.array.display(),
            zarr::Error::UnsupportedFormat { zarr_format: 2 }
        );
    }
    let bytes = std::fs::read(&path)
        .with_context(|| format!("{}: not found or unreadable", path.display()))?;
    let meta = ArrayMetadata::parse(&bytes).with_context(|| format!("{}", path.display()))?;
    let geom = ArrayGeometry::new(&meta).with_context(|| format!("{}", path.display()))?;
    let grid = geom.shard_grid_shape();
    let total: u64 = grid.iter().product();
    let present = (total <= MAX_SHARDS_COUNTED).then(|| {
        let mut n = 0u64;
        let mut idx = vec![0u64; grid.len()];
        for _ in 0..total {
            let key = meta.chunk_key_encoding.chunk_key(&idx);
            if args.array.join(&key).is_file() {
                n += 1;
            }
            advance(&mut idx, &grid);
        }
        n
    });
    let fill: Vec<u8> = meta.fill_value.as_ne_bytes().to_vec();
    let codecs = chain_summary(&meta.codecs);
    if args.json {
        let v = json!({
            "path": args.array,
            "shape": meta.shape,
            "dtype": meta.data_type.name(),
            "sharded": geom.sharded,
            "shard_shape": geom.shard_shape,
            "chunk_shape": geom.chunk_shape,
            "shard_grid": grid,
            "shards_total": total,
            "shards_present": present,
            "codecs": codecs,
            "fill_value_ne_bytes": fill,
            "dimension_names": meta.dimension_names,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("array       {}", args.array.display());
        println!("shape       {:?}", meta.shape);
        println!("dtype       {}", meta.data_type);
        if geom.sharded {
            println!("shards      {:?} (grid {:?})", geom.shard_shape, grid);
            println!(
                "chunks      {:?} ({} per shard)",
                geom.chunk_shape,
                geom.num_chunks_per_shard()?
            );
        } else {
            println!("chunks      {:?} (grid {:?}, unsharded)", geom.chunk_shape, grid);
        }
        match present {
            Some(p) => println!("objects     {p} of {total} present"),
            None => println!("objects     {total} in the grid (too many to count)"),
        }
        println!("codecs      {codecs}");
        println!("fill        {fill:?} (native-endian bytes)");
    }
    Ok(())
}
