//! CPU decode (and, for writers and tests, encode) of one chunk through its whole codec
//! chain (zarr v3 core spec §"Codecs"; sharding codec spec §"Binary shard format").
//!
//! Decoding undoes the bytes→bytes codecs in reverse, then the array→bytes codec (`bytes`
//! with its byte order, or a nested shard), then the array→array codecs (`transpose`),
//! and leaves native-endian elements in the array's axis order in the caller's buffer.
//! Where nothing is left to undo after the last bytes→bytes codec, that codec decodes
//! straight into the caller's buffer.

use std::borrow::Cow;
use std::io::{Read, Write};

use crate::blosc;
use crate::codec::{
    ArrayToArray, ArrayToBytes, BloscCname, BloscShuffle, BytesToBytes, CodecChain, Endian,
    IndexLocation, ShardingCodec,
};
use crate::dtype::{DataType, FillValue};
use crate::error::{Error, Result};
use crate::odometer::{advance, c_strides};
use crate::shard_index::{ChunkLocation, ShardIndex};

/// What a chunk decodes to: its shape (after all array→array codecs are undone, i.e. in
/// the array's axis order), element type and fill value (for nested sharding's empty
/// inner chunks).
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkRepr {
    pub shape: Vec<u64>,
    pub data_type: DataType,
    pub fill_value: FillValue,
}

impl ChunkRepr {
    /// Size in bytes of the decoded chunk.
    ///
    /// # Errors
    /// `Overflow` when it does not fit in `usize`.
    pub fn num_bytes(&self) -> Result<usize> {
        num_bytes(&self.shape, self.data_type)
    }
}

fn num_bytes(shape: &[u64], dt: DataType) -> Result<usize> {
    shape
        .iter()
        .try_fold(dt.size() as u64, |acc, &n| acc.checked_mul(n))
        .and_then(|n| usize::try_from(n).ok())
        .ok_or(Error::Overflow { what: "chunk byte size" })
}

/// Decodes one stored chunk (`bytes`) through `chain` into `out`, which must be exactly
/// the chunk's decoded size (`product(repr.shape) * repr.data_type.size()`). The result
/// is native-endian, in the array's axis order.
///
/// # Errors
/// `OutputSize` when `out` has the wrong length; `DecodedSize` when a stage yields the
/// wrong number of bytes; `Checksum` for a `crc32c` mismatch; `Decompress` for a broken
/// zstd or gzip stream; the blosc module's errors for a broken frame; the shard index's
/// errors for a nested shard; `Overflow` for absurd shapes.
pub fn decode_chunk(
    chain: &CodecChain,
    repr: &ChunkRepr,
    bytes: &[u8],
    out: &mut [u8],
) -> Result<()> {
    let n = repr.num_bytes()?;
    if out.len() != n {
        return Err(Error::OutputSize { expected: n as u64, got: out.len() as u64 });
    }
    let Some(order) = composed_order(&chain.array_to_array, repr.shape.len())? else {
        return decode_array_bytes(chain, repr, &repr.shape, bytes, out);
    };
    let stored_shape: Vec<u64> = order.iter().map(|&i| repr.shape[i]).collect();
    let mut stored = vec![0u8; n];
    decode_array_bytes(chain, repr, &stored_shape, bytes, &mut stored)?;
    permute(&stored, out, &stored_shape, &order, repr.data_type.size(), Direction::StoredToArray);
    Ok(())
}

/// Encodes one chunk of native-endian elements in the array's axis order through
/// `chain`: the inverse of [`decode_chunk`]. Inner chunks of a shard that hold only the
/// fill value are written as empty index entries.
///
/// # Errors
/// `InputSize` when `data` has the wrong length; `Compress` when a codec library fails;
/// the blosc encoder's errors (for example for `snappy`, which cannot be written);
/// `Overflow` for absurd shapes.
pub fn encode_chunk(chain: &CodecChain, repr: &ChunkRepr, data: &[u8]) -> Result<Vec<u8>> {
    let n = repr.num_bytes()?;
    if data.len() != n {
        return Err(Error::InputSize { expected: n as u64, got: data.len() as u64 });
    }
    let (stored_shape, stored): (Vec<u64>, Cow<'_, [u8]>) =
        match composed_order(&chain.array_to_array, repr.shape.len())? {
            None => (repr.shape.clone(), Cow::Borrowed(data)),
            Some(order) => {
                let shape: Vec<u64> = order.iter().map(|&i| repr.shape[i]).collect();
                let mut out = vec![0u8; n];
                permute(
                    data,
                    &mut out,
                    &shape,
                    &order,
                    repr.data_type.size(),
                    Direction::ArrayToStored,
                );
                (shape, Cow::Owned(out))
            }
        };
    let dt = repr.data_type;
    let mut bytes: Vec<u8> = match &chain.array_to_bytes {
        ArrayToBytes::Bytes { endian } => {
            let mut v = stored.into_owned();
            if needs_swap(*endian, dt) {
                swap_bytes(&mut v, dt.size());
            }
            v
        }
        ArrayToBytes::Sharding(s) => encode_shard(s, dt, repr.fill_value, &stored_shape, &stored)?,
    };
    // zarr-python gives blosc the element size of the bytes it compresses.
    let typesize = match chain.array_to_bytes {
        ArrayToBytes::Bytes { .. } => dt.size(),
        ArrayToBytes::Sharding(_) => 1,
    };
    for codec in &chain.bytes_to_bytes {
        bytes = encode_bytes(codec, bytes, typesize)?;
    }
    Ok(bytes)
}

/// The single permutation equivalent to the chain's transposes, or `None` when there is
/// nothing to permute. `order[i]` is the array axis that becomes stored axis `i`.
fn composed_order(codecs: &[ArrayToArray], rank: usize) -> Result<Option<Vec<usize>>> {
    let mut order: Vec<usize> = (0..rank).collect();
    for c in codecs {
        match c {
            ArrayToArray::Transpose { order: o } => {
                let valid = o.len() == rank && {
                    let mut seen = vec![false; rank];
                    o.iter().all(|&i| i < rank && !std::mem::replace(&mut seen[i], true))
                };
                if !valid {
                    return Err(Error::CodecConfig {
                        codec: "transpose",
                        field: "order",
                        reason: format!("{o:?} is not a permutation of 0..{rank}"),
                    });
                }
                order = o.iter().map(|&i| order[i]).collect();
            }
        }
    }
    Ok(order.iter().enumerate().any(|(i, &o)| i != o).then_some(order))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    StoredToArray,
    ArrayToStored,
}

/// Moves elements between the stored layout (C order over `stored_shape`) and the array
/// layout (C order over the array shape, `array_shape[order[i]] = stored_shape[i]`).
/// Both buffers hold `product(stored_shape) * size` bytes.
fn permute(
    src: &[u8],
    dst: &mut [u8],
    stored_shape: &[u64],
    order: &[usize],
    size: usize,
    dir: Direction,
) {
    let rank = stored_shape.len();
    let mut array_shape = vec![0u64; rank];
    for (i, &o) in order.iter().enumerate() {
        array_shape[o] = stored_shape[i];
    }
    // Element strides of the array layout, then seen from each stored axis. Sizes fit in
    // usize because the caller allocated the buffers.
    let array_strides = c_strides(&array_shape);
    let strides: Vec<usize> = order.iter().map(|&o| array_strides[o] as usize).collect();
    let shape: Vec<usize> = stored_shape.iter().map(|&s| s as usize).collect();
    if shape.contains(&0) {
        return;
    }
    let last = rank - 1;
    let (inner_len, inner_stride) = (shape[last], strides[last]);
    // Every axis but the last, row by row.
    let mut idx = vec![0usize; last];
    let mut stored_off = 0usize;
    loop {
        let base: usize = idx.iter().zip(&strides).map(|(i, s)| i * s).sum();
        for k in 0..inner_len {
            let s = (stored_off + k) * size;
            let a = (base + k * inner_stride) * size;
            let (from, to) = match dir {
                Direction::StoredToArray => (s, a),
                Direction::ArrayToStored => (a, s),
            };
            dst[to..to + size].copy_from_slice(&src[from..from + size]);
        }
        stored_off += inner_len;
        if !advance(&mut idx, &shape[..last]) {
            return;
        }
    }
}

fn needs_swap(endian: Option<Endian>, dt: DataType) -> bool {
    dt.size() > 1 && endian.is_some_and(|e| e != Endian::NATIVE)
}

fn swap_bytes(buf: &mut [u8], size: usize) {
    for e in buf.chunks_exact_mut(size) {
        e.reverse();
    }
}

/// Undoes the array→bytes codec (and the bytes→bytes codecs before it) into `dst`, laid
/// out in C order over `shape` (the stored shape).
fn decode_array_bytes(
    chain: &CodecChain,
    repr: &ChunkRepr,
    shape: &[u64],
    bytes: &[u8],
    dst: &mut [u8],
) -> Result<()> {
    let dt = repr.data_type;
    match &chain.array_to_bytes {
        ArrayToBytes::Bytes { endian } => {
            undo_bytes_into(&chain.bytes_to_bytes, bytes, dst)?;
            if needs_swap(*endian, dt) {
                swap_bytes(dst, dt.size());
            }
            Ok(())
        }
        ArrayToBytes::Sharding(s) => {
            let shard = undo_bytes(&chain.bytes_to_bytes, bytes, intermediate_cap(bytes, dst))?;
            decode_shard(s, dt, repr.fill_value, shape, &shard, dst)
        }
    }
}

/// Undoes `codecs` (in reverse) with the result written into `dst`, which must come out
/// exactly full. The first codec decodes straight into `dst`.
fn undo_bytes_into(codecs: &[BytesToBytes], src: &[u8], dst: &mut [u8]) -> Result<()> {
    let Some((first, rest)) = codecs.split_first() else {
        return copy_exact(src, dst, "bytes");
    };
    let mid = undo_bytes(rest, src, intermediate_cap(src, dst))?;
    match first {
        BytesToBytes::Crc32c => copy_exact(check_crc32c(&mid)?, dst, "crc32c"),
        BytesToBytes::Zstd { .. } => {
            if let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(&mid)
                && size > dst.len() as u64
            {
                return Err(Error::DecodedSize {
                    stage: "zstd",
                    expected: dst.len() as u64,
                    got: size,
                });
            }
            let got = zstd::bulk::decompress_to_buffer(&mid, dst)
                .map_err(|e| Error::Decompress { codec: "zstd", message: e.to_string() })?;
            expect_len("zstd", dst.len(), got)
        }
        BytesToBytes::Gzip { .. } => {
            let mut dec = flate2::read::GzDecoder::new(&mid[..]);
            let mut got = 0;
            while got < dst.len() {
                match dec.read(&mut dst[got..]) {
                    Ok(0) => break,
                    Ok(k) => got += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        return Err(Error::Decompress { codec: "gzip", message: e.to_string() });
                    }
                }
            }
            if got == dst.len() {
                // Anything past the expected size is an error too; count it to say how much.
                let extra = std::io::copy(&mut dec, &mut std::io::sink())
                    .map_err(|e| Error::Decompress { codec: "gzip", message: e.to_string() })?;
                got = got.saturating_add(usize::try_from(extra).unwrap_or(usize::MAX));
            }
            expect_len("gzip", dst.len(), got)
        }
        BytesToBytes::Blosc { .. } => {
            let header = blosc::parse_header(&mid)?;
            expect_len("blosc", dst.len(), header.nbytes as usize)?;
            let got = blosc::decode(&mid, dst)?;
            expect_len("blosc", dst.len(), got)
        }
    }
}

/// The most bytes an intermediate stage (a whole shard, or the input of the last
/// bytes→bytes codec) may decode to: generous for real data (a shard's index and inner
/// encodings, even of tiny chunks, stay well within it) but proportional to the chunk, so
/// a small crafted stream cannot expand into gigabytes.
fn intermediate_cap(src: &[u8], dst: &[u8]) -> usize {
    src.len().max(dst.len()).saturating_mul(32).saturating_add(1 << 20)
}

/// Reads `r` to its end, failing once more than `cap` bytes come out.
fn read_capped(mut r: impl Read, codec: &'static str, cap: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    (&mut r)
        .take(cap as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::Decompress { codec, message: e.to_string() })?;
    if out.len() > cap {
        return Err(Error::DecodedSize {
            stage: codec,
            expected: cap as u64,
            got: out.len() as u64,
        });
    }
    Ok(out)
}

/// Undoes `codecs` (in reverse) where the decoded size is not known in advance (a shard,
/// or a stage before another bytes→bytes codec), producing at most `cap` bytes at any
/// stage. `crc32c` only narrows the borrow.
fn undo_bytes<'a>(codecs: &[BytesToBytes], src: &'a [u8], cap: usize) -> Result<Cow<'a, [u8]>> {
    let mut cur = Cow::Borrowed(src);
    for codec in codecs.iter().rev() {
        cur = match codec {
            BytesToBytes::Crc32c => match cur {
                Cow::Borrowed(b) => Cow::Borrowed(check_crc32c(b)?),
                Cow::Owned(mut v) => {
                    let len = check_crc32c(&v)?.len();
                    v.truncate(len);
                    Cow::Owned(v)
                }
            },
            BytesToBytes::Zstd { .. } => {
                // Streaming decode grows the buffer only as data actually decodes, so a
                // forged content size cannot force a huge allocation.
                let d = zstd::stream::read::Decoder::new(&cur[..])
                    .map_err(|e| Error::Decompress { codec: "zstd", message: e.to_string() })?;
                Cow::Owned(read_capped(d, "zstd", cap)?)
            }
            BytesToBytes::Gzip { .. } => {
                Cow::Owned(read_capped(flate2::read::GzDecoder::new(&cur[..]), "gzip", cap)?)
            }
            BytesToBytes::Blosc { .. } => {
                // The frame's layout is validated (cbytes == buffer length, stream
                // offsets in bounds) before the buffer is allocated.
                let layout = blosc::layout(&cur)?;
                if layout.nbytes > cap {
                    return Err(Error::DecodedSize {
                        stage: "blosc",
                        expected: cap as u64,
                        got: layout.nbytes as u64,
                    });
                }
                let mut out = vec![0u8; layout.nbytes];
                let got = blosc::decode(&cur, &mut out)?;
                expect_len("blosc", out.len(), got)?;
                Cow::Owned(out)
            }
        };
    }
    Ok(cur)
}

/// Verifies a trailing little-endian CRC32C and returns the bytes before it.
fn check_crc32c(buf: &[u8]) -> Result<&[u8]> {
    let Some(split) = buf.len().checked_sub(4) else {
        return Err(Error::DecodedSize {
            stage: "crc32c (needs 4 checksum bytes)",
            expected: 4,
            got: buf.len() as u64,
        });
    };
    let (data, tail) = buf.split_at(split);
    let stored = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
    let computed = crc32c::crc32c(data);
    if stored != computed {
        return Err(Error::Checksum { stored, computed });
    }
    Ok(data)
}

fn copy_exact(src: &[u8], dst: &mut [u8], stage: &'static str) -> Result<()> {
    expect_len(stage, dst.len(), src.len())?;
    dst.copy_from_slice(src);
    Ok(())
}

fn expect_len(stage: &'static str, expected: usize, got: usize) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(Error::DecodedSize { stage, expected: expected as u64, got: got as u64 })
    }
}

/// The inner-chunk grid of a shard of `shape`: chunks per axis and their count.
fn inner_grid(s: &ShardingCodec, shape: &[u64]) -> Result<(Vec<u64>, u64)> {
    if s.chunk_shape.len() != shape.len() {
        return Err(Error::CodecConfig {
            codec: "sharding_indexed",
            field: "chunk_shape",
            reason: format!(
                "rank {} differs from the shard's rank {}",
                s.chunk_shape.len(),
                shape.len()
            ),
        });
    }
    let mut per_axis = Vec::with_capacity(shape.len());
    for (axis, (&c, &n)) in s.chunk_shape.iter().zip(shape).enumerate() {
        if c == 0 || n % c != 0 {
            return Err(Error::CodecConfig {
                codec: "sharding_indexed",
                field: "chunk_shape",
                reason: format!(
                    "inner extent {c} on axis {axis} does not divide the shard extent {n}"
                ),
            });
        }
        per_axis.push(n / c);
    }
    let count = per_axis
        .iter()
        .try_fold(1u64, |acc, &n| acc.checked_mul(n))
        .ok_or(Error::Overflow { what: "chunks per shard" })?;
    Ok((per_axis, count))
}

/// Where inner chunk `coords` (in the shard's chunk grid) sits in a shard buffer: the
/// byte offset of each contiguous run, and the run length in bytes.
struct Placement {
    /// Number of leading axes iterated run by run; the rest form one contiguous run.
    outer_axes: usize,
    run_bytes: usize,
    /// Byte strides of the shard buffer.
    strides: Vec<usize>,
}

impl Placement {
    fn new(shape: &[u64], chunk: &[u64], size: usize) -> Self {
        let rank = shape.len();
        // Trailing axes where the chunk spans the whole shard merge with the axis just
        // before them into one contiguous run.
        let mut outer_axes = rank.saturating_sub(1);
        while outer_axes > 0 && chunk[outer_axes] == shape[outer_axes] {
            outer_axes -= 1;
        }
        let run_elems: u64 = chunk[outer_axes..].iter().product();
        let strides = c_strides(shape).into_iter().map(|s| s as usize * size).collect();
        Self { outer_axes, run_bytes: run_elems as usize * size, strides }
    }

    /// Calls `f(shard_offset, chunk_offset)` for each run of the chunk at `origin`.
    fn for_each_run(&self, chunk: &[u64], origin: &[u64], mut f: impl FnMut(usize, usize)) {
        let base: usize = origin.iter().zip(&self.strides).map(|(&o, &s)| o as usize * s).sum();
        let outer = &chunk[..self.outer_axes];
        let mut idx = vec![0u64; outer.len()];
        let mut chunk_off = 0usize;
        loop {
            let off: usize =
                base + idx.iter().zip(&self.strides).map(|(&i, &s)| i as usize * s).sum::<usize>();
            f(off, chunk_off);
            chunk_off += self.run_bytes;
            if !advance(&mut idx, outer) {
                return;
            }
        }
    }
}

/// The array origin of the inner chunk at grid coordinates `inner` of a shard.
fn chunk_origin(inner: &[u64], chunk_shape: &[u64]) -> Vec<u64> {
    inner.iter().zip(chunk_shape).map(|(c, n)| c * n).collect()
}

fn decode_shard(
    s: &ShardingCodec,
    dt: DataType,
    fill: FillValue,
    shape: &[u64],
    shard: &[u8],
    dst: &mut [u8],
) -> Result<()> {
    let (per_axis, n_chunks) = inner_grid(s, shape)?;
    let index = ShardIndex::of_shard(s, n_chunks, shard)?;
    if index.entries().contains(&ChunkLocation::Empty) {
        fill.fill(dst);
    }
    let inner = ChunkRepr { shape: s.chunk_shape.clone(), data_type: dt, fill_value: fill };
    let chunk_bytes = inner.num_bytes()?;
    let place = Placement::new(shape, &s.chunk_shape, dt.size());
    let direct = place.run_bytes == chunk_bytes;
    let mut scratch = if direct { Vec::new() } else { vec![0u8; chunk_bytes] };
    // The inner grid in C order, the order of the index's entries.
    let mut inner_idx = vec![0u64; per_axis.len()];
    for i in 0..n_chunks {
        let origin = chunk_origin(&inner_idx, &s.chunk_shape);
        advance(&mut inner_idx, &per_axis);
        let Some(src) = index.chunk_bytes(shard, i)? else { continue };
        if direct {
            let mut at = 0;
            place.for_each_run(&s.chunk_shape, &origin, |off, _| at = off);
            decode_chunk(&s.codecs, &inner, src, &mut dst[at..at + chunk_bytes])?;
        } else {
            decode_chunk(&s.codecs, &inner, src, &mut scratch)?;
            let run = place.run_bytes;
            place.for_each_run(&s.chunk_shape, &origin, |off, c| {
                dst[off..off + run].copy_from_slice(&scratch[c..c + run]);
            });
        }
    }
    Ok(())
}

fn encode_shard(
    s: &ShardingCodec,
    dt: DataType,
    fill: FillValue,
    shape: &[u64],
    data: &[u8],
) -> Result<Vec<u8>> {
    let (per_axis, n_chunks) = inner_grid(s, shape)?;
    let inner = ChunkRepr { shape: s.chunk_shape.clone(), data_type: dt, fill_value: fill };
    let chunk_bytes = inner.num_bytes()?;
    let place = Placement::new(shape, &s.chunk_shape, dt.size());
    let index_len = ShardIndex::encoded_len(s, n_chunks)?;
    let base = match s.index_location {
        IndexLocation::Start => index_len,
        IndexLocation::End => 0,
    };
    let mut body = Vec::new();
    let mut entries = Vec::new();
    let mut scratch = vec![0u8; chunk_bytes];
    let fill_bytes = fill.as_ne_bytes();
    // The inner grid in C order, the order of the index's entries.
    let mut inner_idx = vec![0u64; per_axis.len()];
    for _ in 0..n_chunks {
        let origin = chunk_origin(&inner_idx, &s.chunk_shape);
        advance(&mut inner_idx, &per_axis);
        let run = place.run_bytes;
        place.for_each_run(&s.chunk_shape, &origin, |off, c| {
            scratch[c..c + run].copy_from_slice(&data[off..off + run]);
        });
        if scratch.chunks_exact(dt.size()).all(|e| e == fill_bytes) {
            entries.push(ChunkLocation::Empty);
            continue;
        }
        let encoded = encode_chunk(&s.codecs, &inner, &scratch)?;
        entries.push(ChunkLocation::Range {
            offset: base + body.len() as u64,
            nbytes: encoded.len() as u64,
        });
        body.extend_from_slice(&encoded);
    }
    let index = ShardIndex::encode(s, &entries)?;
    Ok(match s.index_location {
        IndexLocation::Start => [index, body].concat(),
        IndexLocation::End => [body, index].concat(),
    })
}

fn encode_bytes(codec: &BytesToBytes, data: Vec<u8>, default_typesize: usize) -> Result<Vec<u8>> {
    let failed = |codec: &'static str| {
        move |e: std::io::Error| Error::Compress { codec, message: e.to_string() }
    };
    match *codec {
        BytesToBytes::Crc32c => {
            let crc = crc32c::crc32c(&data);
            let mut data = data;
            data.extend_from_slice(&crc.to_le_bytes());
            Ok(data)
        }
        BytesToBytes::Zstd { level, checksum } => {
            let mut c = zstd::bulk::Compressor::new(level).map_err(failed("zstd"))?;
            c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(checksum))
                .map_err(failed("zstd"))?;
            c.compress(&data).map_err(failed("zstd"))
        }
        BytesToBytes::Gzip { level } => {
            let mut enc =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
            enc.write_all(&data).map_err(failed("gzip"))?;
            enc.finish().map_err(failed("gzip"))
        }
        BytesToBytes::Blosc { cname, clevel, shuffle, typesize, blocksize } => {
            let compressor = match cname {
                BloscCname::BloscLz => blosc::Compressor::BloscLz,
                // lz4hc writes the lz4 format.
                BloscCname::Lz4 | BloscCname::Lz4Hc => blosc::Compressor::Lz4,
                BloscCname::Snappy => blosc::Compressor::Snappy,
                BloscCname::Zlib => blosc::Compressor::Zlib,
                BloscCname::Zstd => blosc::Compressor::Zstd,
            };
            let shuffle = match shuffle {
                BloscShuffle::NoShuffle => blosc::Shuffle::None,
                BloscShuffle::Shuffle => blosc::Shuffle::Byte,
                BloscShuffle::BitShuffle => blosc::Shuffle::Bit,
            };
            let opts = blosc::EncodeOptions {
                compressor,
                clevel,
                shuffle,
                typesize: typesize.map_or(default_typesize, |t| t as usize),
                blocksize: usize::try_from(blocksize).unwrap_or(usize::MAX),
                // c-blosc 1.x splits blocks into per-byte streams for the fast codecs.
                split: matches!(compressor, blosc::Compressor::BloscLz | blosc::Compressor::Lz4),
            };
            blosc::encode(&data, &opts)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny zstd stream that expands enormously inside a shard's outer codec must fail
    /// with DecodedSize, not allocate its full expansion.
    #[test]
    fn intermediate_stages_are_capped_against_decompression_bombs() {
        let bomb = zstd::bulk::compress(&vec![0u8; 64 << 20], 3).unwrap();
        assert!(bomb.len() < 1 << 20);
        let out = vec![0u8; 16];
        let cap = intermediate_cap(&bomb, &out);
        let e = undo_bytes(&[BytesToBytes::Zstd { level: 3, checksum: false }], &bomb, cap);
        assert!(matches!(e, Err(Error::DecodedSize { stage: "zstd", .. })), "{e:?}");
    }

    use proptest::prelude::*;
    use splitmix::SplitMix64;

    fn repr(shape: &[u64], dt: DataType) -> ChunkRepr {
        ChunkRepr { shape: shape.to_vec(), data_type: dt, fill_value: FillValue::zero(dt) }
    }

    fn le(b2b: Vec<BytesToBytes>) -> CodecChain {
        CodecChain::little_endian(b2b)
    }

    fn u16s(v: &[u16]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_ne_bytes()).collect()
    }

    /// Decodes into a poisoned buffer so unwritten bytes show.
    fn decode(chain: &CodecChain, r: &ChunkRepr, bytes: &[u8]) -> Result<Vec<u8>> {
        let mut out = vec![0xAB; r.num_bytes()?];
        decode_chunk(chain, r, bytes, &mut out)?;
        Ok(out)
    }

    #[test]
    fn bytes_codec_honours_endianness() {
        let r = repr(&[3], DataType::UInt16);
        let big = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06];
        let out = decode(&CodecChain::bytes(Some(Endian::Big)), &r, &big).unwrap();
        assert_eq!(out, u16s(&[0x0102, 0x0304, 0x0506]));
        let out = decode(&CodecChain::bytes(Some(Endian::Little)), &r, &big).unwrap();
        assert_eq!(out, u16s(&[0x0201, 0x0403, 0x0605]));
        assert_eq!(
            encode_chunk(
                &CodecChain::bytes(Some(Endian::Big)),
                &r,
                &u16s(&[0x0102, 0x0304, 0x0506])
            )
            .unwrap(),
            big
        );
    }

    #[test]
    fn transpose_restores_array_order() {
        // Array 2x3 [[0,1,2],[3,4,5]]; stored transposed (3x2): [[0,3],[1,4],[2,5]].
        let r = repr(&[2, 3], DataType::UInt8);
        let chain = CodecChain {
            array_to_array: vec![ArrayToArray::Transpose { order: vec![1, 0] }],
            ..CodecChain::bytes(None)
        };
        assert_eq!(decode(&chain, &r, &[0, 3, 1, 4, 2, 5]).unwrap(), [0, 1, 2, 3, 4, 5]);
        assert_eq!(encode_chunk(&chain, &r, &[0, 1, 2, 3, 4, 5]).unwrap(), [0, 3, 1, 4, 2, 5]);
        // 3-D, order [2, 0, 1] as numpy's transpose: stored[i][j][k] = a[j][k][i].
        let r = repr(&[2, 3, 4], DataType::UInt8);
        let a: Vec<u8> = (0..24).collect();
        let mut stored = Vec::new();
        for i in 0..4 {
            for j in 0..2 {
                for k in 0..3 {
                    stored.push(a[j * 12 + k * 4 + i]);
                }
            }
        }
        let chain = CodecChain {
            array_to_array: vec![ArrayToArray::Transpose { order: vec![2, 0, 1] }],
            ..CodecChain::bytes(None)
        };
        assert_eq!(decode(&chain, &r, &stored).unwrap(), a);
        // Two transposes compose: [1,0,2] then [0,2,1] equals [1,2,0].
        let two = CodecChain {
            array_to_array: vec![
                ArrayToArray::Transpose { order: vec![1, 0, 2] },
                ArrayToArray::Transpose { order: vec![0, 2, 1] },
            ],
            ..CodecChain::bytes(None)
        };
        let one = CodecChain {
            array_to_array: vec![ArrayToArray::Transpose { order: vec![1, 2, 0] }],
            ..CodecChain::bytes(None)
        };
        assert_eq!(encode_chunk(&two, &r, &a).unwrap(), encode_chunk(&one, &r, &a).unwrap());
    }

    #[test]
    fn size_errors_are_reported() {
        let r = repr(&[4], DataType::UInt16);
        let chain = CodecChain::bytes(Some(Endian::Little));
        let mut out = vec![0; 7];
        assert_eq!(
            decode_chunk(&chain, &r, &[0; 8], &mut out),
            Err(Error::OutputSize { expected: 8, got: 7 })
        );
        assert_eq!(
            decode(&chain, &r, &[0; 6]),
            Err(Error::DecodedSize { stage: "bytes", expected: 8, got: 6 })
        );
        assert_eq!(
            encode_chunk(&chain, &r, &[0; 9]),
            Err(Error::InputSize { expected: 8, got: 9 })
        );
        let zstd = le(vec![BytesToBytes::Zstd { level: 1, checksum: false }]);
        let ten = encode_chunk(&zstd, &repr(&[5], DataType::UInt16), &[1; 10]).unwrap();
        assert_eq!(
            decode(&zstd, &r, &ten),
            Err(Error::DecodedSize { stage: "zstd", expected: 8, got: 10 })
        );
        let six = encode_chunk(&zstd, &repr(&[3], DataType::UInt16), &[1; 6]).unwrap();
        assert_eq!(
            decode(&zstd, &r, &six),
            Err(Error::DecodedSize { stage: "zstd", expected: 8, got: 6 })
        );
        assert!(matches!(
            decode(&zstd, &r, &[1, 2, 3, 4, 5]),
            Err(Error::Decompress { codec: "zstd", .. })
        ));
        let gzip = le(vec![BytesToBytes::Gzip { level: 6 }]);
        let ten = encode_chunk(&gzip, &repr(&[5], DataType::UInt16), &[1; 10]).unwrap();
        assert_eq!(
            decode(&gzip, &r, &ten),
            Err(Error::DecodedSize { stage: "gzip", expected: 8, got: 10 })
        );
        let six = encode_chunk(&gzip, &repr(&[3], DataType::UInt16), &[1; 6]).unwrap();
        assert_eq!(
            decode(&gzip, &r, &six),
            Err(Error::DecodedSize { stage: "gzip", expected: 8, got: 6 })
        );
        assert!(matches!(
            decode(&gzip, &r, b"not gzip"),
            Err(Error::Decompress { codec: "gzip", .. })
        ));
    }

    #[test]
    fn crc32c_is_verified() {
        let r = repr(&[4], DataType::UInt8);
        let chain =
            CodecChain { bytes_to_bytes: vec![BytesToBytes::Crc32c], ..CodecChain::bytes(None) };
        let enc = encode_chunk(&chain, &r, &[1, 2, 3, 4]).unwrap();
        assert_eq!(&enc[..4], &[1, 2, 3, 4]);
        assert_eq!(enc[4..], crc32c::crc32c(&[1, 2, 3, 4]).to_le_bytes());
        assert_eq!(decode(&chain, &r, &enc).unwrap(), [1, 2, 3, 4]);
        let mut bad = enc.clone();
        bad[0] ^= 1;
        assert!(
            matches!(decode(&chain, &r, &bad), Err(Error::Checksum { stored, computed }) if stored != computed)
        );
        assert!(matches!(decode(&chain, &r, &[1, 2]), Err(Error::DecodedSize { .. })));
        // crc32c after a compressor: the checksum covers the compressed bytes.
        let chain = CodecChain {
            bytes_to_bytes: vec![
                BytesToBytes::Zstd { level: 3, checksum: true },
                BytesToBytes::Crc32c,
            ],
            ..CodecChain::bytes(None)
        };
        let enc = encode_chunk(&chain, &r, &[9, 8, 7, 6]).unwrap();
        assert_eq!(decode(&chain, &r, &enc).unwrap(), [9, 8, 7, 6]);
        let mut bad = enc.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x80;
        assert!(matches!(decode(&chain, &r, &bad), Err(Error::Checksum { .. })));
    }

    #[test]
    fn blosc_round_trips_through_the_chain() {
        let r = repr(&[64, 8], DataType::UInt32);
        let data: Vec<u8> = (0u32..512).flat_map(|x| (x / 3).to_ne_bytes()).collect();
        for cname in [
            BloscCname::BloscLz,
            BloscCname::Lz4,
            BloscCname::Lz4Hc,
            BloscCname::Zlib,
            BloscCname::Zstd,
        ] {
            for shuffle in
                [BloscShuffle::NoShuffle, BloscShuffle::Shuffle, BloscShuffle::BitShuffle]
            {
                let chain = le(vec![BytesToBytes::Blosc {
                    cname,
                    clevel: 5,
                    shuffle,
                    typesize: None,
                    blocksize: 0,
                }]);
                let enc = encode_chunk(&chain, &r, &data).unwrap();
                assert!(enc.len() < data.len(), "{cname:?} {shuffle:?} did not compress");
                assert_eq!(decode(&chain, &r, &enc).unwrap(), data, "{cname:?} {shuffle:?}");
            }
        }
    }

    fn sharded(inner_shape: &[u64], inner: CodecChain, loc: IndexLocation) -> CodecChain {
        let mut s = ShardingCodec::new(inner_shape.to_vec(), inner);
        s.index_location = loc;
        CodecChain {
            array_to_array: vec![],
            array_to_bytes: ArrayToBytes::Sharding(Box::new(s)),
            bytes_to_bytes: vec![],
        }
    }

    #[test]
    fn shards_place_chunks_and_fill_empty_ones() {
        // A 4x4 u16 shard of 2x2 chunks; chunk (0,1) is all fill (7) and is not stored.
        let fill = FillValue::from_ne_bytes(DataType::UInt16, &7u16.to_ne_bytes()).unwrap();
        let r = ChunkRepr { shape: vec![4, 4], data_type: DataType::UInt16, fill_value: fill };
        #[rustfmt::skip]
        let a = u16s(&[
            1, 2, 7, 7,
            3, 4, 7, 7,
            5, 6, 9, 10,
            7, 8, 11, 12,
        ]);
        for loc in [IndexLocation::Start, IndexLocation::End] {
            let chain = sharded(&[2, 2], CodecChain::bytes(Some(Endian::Big)), loc);
            let enc = encode_chunk(&chain, &r, &a).unwrap();
            // 3 stored chunks of 8 bytes, a 4-entry index with crc32c.
            assert_eq!(enc.len(), 3 * 8 + 4 * 16 + 4);
            let ArrayToBytes::Sharding(s) = &chain.array_to_bytes else { unreachable!() };
            let idx = ShardIndex::of_shard(s, 4, &enc).unwrap();
            assert_eq!(idx.get(1), Some(ChunkLocation::Empty));
            // Chunk (0,0) is stored big-endian: 1, 2, 3, 4.
            assert_eq!(idx.chunk_bytes(&enc, 0), Ok(Some(&[0, 1, 0, 2, 0, 3, 0, 4][..])));
            assert_eq!(decode(&chain, &r, &enc).unwrap(), a);
        }
        // A shard of only fill is just its index.
        let chain = sharded(&[2, 2], CodecChain::bytes(Some(Endian::Little)), IndexLocation::End);
        let all_fill = u16s(&[7; 16]);
        let enc = encode_chunk(&chain, &r, &all_fill).unwrap();
        assert_eq!(enc.len(), 4 * 16 + 4);
        assert_eq!(decode(&chain, &r, &enc).unwrap(), all_fill);
        // Corrupting the index is reported by the shard index.
        let mut bad = encode_chunk(&chain, &r, &a).unwrap();
        let last = bad.len() - 10;
        bad[last] ^= 1;
        assert!(matches!(decode(&chain, &r, &bad), Err(Error::IndexChecksum { .. })));
        assert!(matches!(decode(&chain, &r, &bad[..20]), Err(Error::ShardTooShort { .. })));
    }

    #[test]
    fn nested_shards_with_transpose_and_compression() {
        let r = repr(&[8, 6], DataType::Float32);
        let data: Vec<u8> = (0..48).flat_map(|x| (x as f32 * 0.5).to_ne_bytes()).collect();
        let leaf = CodecChain {
            array_to_array: vec![ArrayToArray::Transpose { order: vec![1, 0] }],
            array_to_bytes: ArrayToBytes::Bytes { endian: Some(Endian::Big) },
            bytes_to_bytes: vec![BytesToBytes::Gzip { level: 1 }, BytesToBytes::Crc32c],
        };
        let mid = sharded(&[2, 3], leaf, IndexLocation::Start);
        let mut outer = sharded(&[4, 6], mid, IndexLocation::End);
        outer.bytes_to_bytes.push(BytesToBytes::Zstd { level: 1, checksum: false });
        let enc = encode_chunk(&outer, &r, &data).unwrap();
        assert_eq!(decode(&outer, &r, &enc).unwrap(), data);
    }

    /// True with probability `percent` / 100.
    fn chance(rng: &mut SplitMix64, percent: u64) -> bool {
        rng.below(100) < percent
    }

    fn random_b2b(rng: &mut SplitMix64) -> Vec<BytesToBytes> {
        (0..rng.below(3))
            .map(|_| match rng.below(4) {
                0 => {
                    BytesToBytes::Zstd { level: rng.below(5) as i32 - 1, checksum: chance(rng, 50) }
                }
                1 => BytesToBytes::Gzip { level: rng.below(10) as u32 },
                2 => BytesToBytes::Crc32c,
                _ => BytesToBytes::Blosc {
                    cname: [
                        BloscCname::BloscLz,
                        BloscCname::Lz4,
                        BloscCname::Lz4Hc,
                        BloscCname::Zlib,
                        BloscCname::Zstd,
                    ][rng.below(5) as usize],
                    clevel: rng.below(10) as u8,
                    shuffle: BloscShuffle::ALL[rng.below(3) as usize],
                    typesize: None,
                    blocksize: [0, 64, 256][rng.below(3) as usize],
                },
            })
            .collect()
    }

    fn random_transpose(rng: &mut SplitMix64, rank: usize) -> Vec<ArrayToArray> {
        if !chance(rng, 40) {
            return vec![];
        }
        let mut order: Vec<usize> = (0..rank).collect();
        for i in (1..rank).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        vec![ArrayToArray::Transpose { order }]
    }

    /// A random chain for chunks of `shape` (the shape the chain's first codec sees),
    /// sharded up to `depth` more levels.
    fn random_chain(rng: &mut SplitMix64, dt: DataType, shape: &[u64], depth: u32) -> CodecChain {
        let array_to_array = random_transpose(rng, shape.len());
        let stored =
            CodecChain { array_to_array: array_to_array.clone(), ..CodecChain::bytes(None) }
                .inner_shape(shape);
        let array_to_bytes = if depth > 0 && chance(rng, 60) {
            // Inner extents: divisors of the stored extents.
            let inner: Vec<u64> = stored
                .iter()
                .map(|&n| {
                    let divisors: Vec<u64> = (1..=n).filter(|d| n % d == 0).collect();
                    divisors[rng.below(divisors.len() as u64) as usize]
                })
                .collect();
            let codecs = random_chain(rng, dt, &inner, depth - 1);
            let mut s = ShardingCodec::new(inner, codecs);
            if chance(rng, 50) {
                s.index_location = IndexLocation::Start;
            }
            if chance(rng, 50) {
                s.index_codecs = CodecChain::bytes(Some(Endian::Big));
            }
            ArrayToBytes::Sharding(Box::new(s))
        } else {
            let endian = if dt.size() == 1 && chance(rng, 50) {
                None
            } else if chance(rng, 50) {
                Some(Endian::Big)
            } else {
                Some(Endian::Little)
            };
            ArrayToBytes::Bytes { endian }
        };
        CodecChain { array_to_array, array_to_bytes, bytes_to_bytes: random_b2b(rng) }
    }

    fn cases(default: u32) -> ProptestConfig {
        let cases =
            std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
        ProptestConfig { cases, ..ProptestConfig::default() }
    }

    proptest! {
        #![proptest_config(cases(96))]

        /// decode(encode(x)) == x over random data types, shapes and chains (transpose,
        /// both byte orders, zstd, gzip, crc32c, blosc, sharding nested up to 3 deep).
        #[test]
        fn decode_inverts_encode(seed in any::<u64>()) {
            let mut rng = SplitMix64::new(seed);
            let dt = DataType::ALL[rng.below(13) as usize];
            let rank = 1 + rng.below(3) as usize;
            let shape: Vec<u64> = (0..rank).map(|_| [1, 2, 3, 4, 6, 8, 12][rng.below(7) as usize]).collect();
            let chain = random_chain(&mut rng, dt, &shape, 3);
            let fill_bytes: Vec<u8> = (0..dt.size()).map(|_| rng.next_u64() as u8).collect();
            let fill = FillValue::from_ne_bytes(dt, &fill_bytes).unwrap();
            let r = ChunkRepr { shape, data_type: dt, fill_value: fill };
            // Sparse data so that sharding writes empty inner chunks.
            let density = rng.below(101);
            let mut data = Vec::new();
            for _ in 0..r.num_bytes().unwrap() / dt.size() {
                if chance(&mut rng, density) {
                    data.extend((0..dt.size()).map(|_| rng.next_u64() as u8));
                } else {
                    data.extend_from_slice(&fill_bytes);
                }
            }
            let enc = encode_chunk(&chain, &r, &data).unwrap();
            let dec = decode(&chain, &r, &enc).unwrap();
            prop_assert!(dec == data, "chain {:?}", chain);
            // And the chain survives its JSON form.
            let back = CodecChain::parse(&chain.to_json_value(), dt, &r.shape).unwrap();
            prop_assert_eq!(back, chain);
        }

        /// Any corruption of an encoded chunk decodes to Ok or Err, never a panic.
        #[test]
        fn decode_never_panics_on_corrupt_chunks(seed in any::<u64>(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4), cut in any::<prop::sample::Index>()) {
            let mut rng = SplitMix64::new(seed);
            let dt = DataType::ALL[rng.below(13) as usize];
            let shape: Vec<u64> = (0..1 + rng.below(2) as usize).map(|_| [2, 4, 6][rng.below(3) as usize]).collect();
            let chain = random_chain(&mut rng, dt, &shape, 2);
            let r = repr(&shape, dt);
            let data: Vec<u8> = (0..r.num_bytes().unwrap()).map(|i| (i % 7) as u8).collect();
            let mut enc = encode_chunk(&chain, &r, &data).unwrap();
            for (i, b) in flips {
                let i = i.index(enc.len());
                enc[i] ^= b;
            }
            let _ = decode(&chain, &r, &enc);
            let _ = decode(&chain, &r, &enc[..cut.index(enc.len())]);
        }
    }
}
