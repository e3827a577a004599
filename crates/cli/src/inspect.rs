//! `damacy inspect`: what an array is and how it is stored.

use anyhow::{Context, Result};
use serde_json::json;
use store::Store;
use zarr::odometer::advance;
use zarr::{ArrayGeometry, ArrayToBytes, BytesToBytes, CodecChain};

#[derive(clap::Args, Debug)]
pub(crate) struct InspectArgs {
    /// The array: its directory (the one holding zarr.json or .zarray), or an `s3://`, `gs://`,
    /// `az://` or `http(s)://` uri.
    array: String,
    #[command(flatten)]
    object: crate::ObjectArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Shards whose presence is counted by stat-ing every key; larger grids report only
/// their size. An object store pays a request per key: fewer there.
const MAX_SHARDS_COUNTED: u64 = 1 << 16;
const MAX_OBJECTS_COUNTED_REMOTE: u64 = 1 << 10;

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
        BytesToBytes::Zlib { level } => format!("zlib(level={level})"),
        BytesToBytes::Lz4 { acceleration } => format!("lz4(acceleration={acceleration})"),
        BytesToBytes::Crc32c => "crc32c".into(),
    }));
    parts.join(" -> ")
}

pub(crate) fn inspect(args: &InspectArgs) -> Result<()> {
    // An OME-NGFF image group prints its levels and labels; anything else is an array.
    if crate::image::inspect(&args.array, &args.object, args.json)? {
        return Ok(());
    }
    let array = crate::array_uri(&args.array)?.display().to_string();
    let remote = store::is_remote_uri(&array);
    let remote_cfg = args.object.config()?.to_remote()?;
    let fs_cfg = store::FsStoreConfig { io_threads: 2, ..Default::default() };
    let store = store::UriStore::new(fs_cfg, remote_cfg)?;
    let key = |rel: &str| format!("{}/{rel}", array.trim_end_matches('/'));
    // zarr.json (v3) or .zarray (v2): the prefetcher's reader decides, and names the file.
    let prefetch_cache::fetch::ReadMetadata { meta, key: path } =
        prefetch_cache::fetch::read_metadata(&store, array.trim_end_matches('/'))?;
    let geom = ArrayGeometry::new(&meta).with_context(|| path.clone())?;
    let grid = geom.shard_grid_shape();
    let total: u64 = grid.iter().product();
    let limit = if remote { MAX_OBJECTS_COUNTED_REMOTE } else { MAX_SHARDS_COUNTED };
    let present = if total <= limit {
        let mut n = 0u64;
        let mut idx = vec![0u64; grid.len()];
        for _ in 0..total {
            let k = key(&meta.chunk_key_encoding.chunk_key(&idx));
            match store.stat(&k) {
                Ok(Some(_)) => n += 1,
                Ok(None) | Err(store::Error::IsDirectory { .. }) => {}
                Err(e) => return Err(e).with_context(|| k.clone()),
            }
            advance(&mut idx, &grid);
        }
        Some(n)
    } else {
        None
    };
    let fill: Vec<u8> = meta.fill_value.as_ne_bytes().to_vec();
    let codecs = chain_summary(&meta.codecs);
    if args.json {
        let v = json!({
            "path": array,
            "zarr_format": meta.zarr_format.number(),
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
        println!("array       {array} ({})", meta.zarr_format);
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
