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
/// zstd, gzip, zlib or lz4 stream; the blosc module's errors for a broken frame; the shard index's
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
            let got = zstd_decompress_into(&mid, dst)
                .map_err(|e| Error::Decompress { codec: "zstd", message: e.to_string() })?;
            expect_len("zstd", dst.len(), got)
        }
        BytesToBytes::Gzip { .. } => {
            read_stream_into(flate2::read::GzDecoder::new(&mid[..]), "gzip", dst)
        }
        BytesToBytes::Zlib { .. } => {
            read_stream_into(flate2::read::ZlibDecoder::new(&mid[..]), "zlib", dst)
        }
        BytesToBytes::Lz4 { .. } => decode_numcodecs_lz4(&mid, dst),
        BytesToBytes::Blosc { .. } => {
            let header = blosc::parse_header(&mid)?;
            expect_len("blosc", dst.len(), header.nbytes as usize)?;
            let got = blosc::decode(&mid, dst)?;
            expect_len("blosc", dst.len(), got)
        }
    }
}

thread_local! {
    /// One zstd decompression context per thread, reused across chunks: creating one per
    /// chunk cost ~3% of the host engine's time plus page faults on its fresh workspace.
    static ZSTD_DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// One-shot zstd decompression of `src` into `dst` with this thread's reused context
/// (each call starts a fresh frame, so no state carries over between chunks, not even
/// after an error).
fn zstd_decompress_into(src: &[u8], dst: &mut [u8]) -> std::io::Result<usize> {
    ZSTD_DCTX.with(|slot| {
        // Not re-entered (no callback runs inside a decompression); a context in use
        // would only mean a fresh one for this call.
        let Ok(mut slot) = slot.try_borrow_mut() else {
            return zstd::bulk::decompress_to_buffer(src, dst);
        };
        let dctx = match &mut *slot {
            Some(d) => d,
            empty => empty.insert(zstd::bulk::Decompressor::new()?),
        };
        dctx.decompress_to_buffer(src, dst)
    })
}

/// Decodes the stream `dec` into `dst`, which it must fill exactly: a shorter stream and
/// one with bytes to spare are both `DecodedSize` (saying how many came out).
fn read_stream_into(mut dec: impl Read, codec: &'static str, dst: &mut [u8]) -> Result<()> {
    let failed = |e: std::io::Error| Error::Decompress { codec, message: e.to_string() };
    let mut got = 0;
    while got < dst.len() {
        match dec.read(&mut dst[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(failed(e)),
        }
    }
    if got == dst.len() {
        // Anything past the expected size is an error too; count it to say how much.
        let extra = std::io::copy(&mut dec, &mut std::io::sink()).map_err(failed)?;
        got = got.saturating_add(usize::try_from(extra).unwrap_or(usize::MAX));
    }
    expect_len(codec, dst.len(), got)
}

/// Splits numcodecs' `lz4` framing (`numcodecs/lz4.pyx` of numcodecs 0.16: the decoded
/// length as a little-endian `u32`, then one LZ4 block) into the stated length and the
/// block. numcodecs reads the length into a C `int` and refuses anything below 1, so
/// this does too.
fn numcodecs_lz4(src: &[u8]) -> Result<(usize, &[u8])> {
    let Some((head, block)) = src.split_first_chunk::<4>() else {
        return Err(Error::DecodedSize {
            stage: "lz4 (needs its 4-byte length header)",
            expected: 4,
            got: src.len() as u64,
        });
    };
    let stated = u32::from_le_bytes(*head);
    match usize::try_from(stated) {
        Ok(n) if (1..=i32::MAX as usize).contains(&n) => Ok((n, block)),
        _ => Err(Error::Decompress {
            codec: "lz4",
            message: format!(
                "the header states {stated} decoded bytes; numcodecs writes 1 to 2^31-1"
            ),
        }),
    }
}

/// Decodes numcodecs' `lz4` into `dst`, which the stated length and the block must fill
/// exactly.
fn decode_numcodecs_lz4(src: &[u8], dst: &mut [u8]) -> Result<()> {
    let (stated, block) = numcodecs_lz4(src)?;
    expect_len("lz4", dst.len(), stated)?;
    let got = lz4_flex::block::decompress_into(block, dst)
        .map_err(|e| Error::Decompress { codec: "lz4", message: e.to_string() })?;
    expect_len("lz4", dst.len(), got)
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
            BytesToBytes::Zlib { .. } => {
                Cow::Owned(read_capped(flate2::read::ZlibDecoder::new(&cur[..]), "zlib", cap)?)
            }
            BytesToBytes::Lz4 { .. } => {
                // The stated length is checked against the cap before it is allocated.
                let (stated, _) = numcodecs_lz4(&cur)?;
                if stated > cap {
                    return Err(Error::DecodedSize {
                        stage: "lz4",
                        expected: cap as u64,
                        got: stated as u64,
                    });
                }
                let mut out = vec![0u8; stated];
                decode_numcodecs_lz4(&cur, &mut out)?;
                Cow::Owned(out)
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
        BytesToBytes::Zlib { level } => {
            let mut enc =
                flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(level));
            enc.write_all(&data).map_err(failed("zlib"))?;
            enc.finish().map_err(failed("zlib"))
        }
        BytesToBytes::Lz4 { .. } => {
            // numcodecs cannot decode an empty buffer's frame (it refuses a stated length
            // of 0), nor state more than 2^31-1 bytes.
            let stated = u32::try_from(data.len())
                .ok()
                .filter(|&n| (1..=i32::MAX as u32).contains(&n))
                .ok_or_else(|| Error::Compress {
                    codec: "lz4",
                    message: format!("numcodecs' lz4 holds 1 to 2^31-1 bytes, not {}", data.len()),
                })?;
            let mut out = stated.to_le_bytes().to_vec();
            out.extend_from_slice(&lz4_flex::block::compress(&data));
            Ok(out)
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
mod tests;
