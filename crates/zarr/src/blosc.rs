//! blosc1 frames: header parsing, the block/stream layout, CPU decode and a small encoder
//! (c-blosc 1.x, `README_HEADER.rst` and `blosc/blosc.c` of c-blosc 1.21).
//!
//! A frame is a 16-byte header, then (unless the frame is *memcpyed*) one little-endian
//! `i32` start offset per block, then for every block one or more *streams*, each an
//! `i32` compressed length followed by that many bytes. A block is split into `typesize`
//! streams (one per byte plane after shuffling) when the header does not set
//! `DONT_SPLIT`, `typesize <= 16`, `blocksize / typesize >= 128`, and the block is not the
//! short last block; otherwise it is one stream. A stream whose compressed length equals
//! its decoded length is stored raw. A memcpyed frame holds the data verbatim after the
//! header. Shuffling (byte or bit) is applied per block before compression.
//!
//! Header (all integers little-endian):
//! | byte | field |
//! |---|---|
//! | 0 | format version (2; 1 also read; ≥ 3 is blosc2) |
//! | 1 | compressor format version |
//! | 2 | flags: 0x01 byte shuffle, 0x02 memcpyed, 0x04 bit shuffle, 0x08 reserved, 0x10 don't split, bits 5–7 compressor |
//! | 3 | typesize |
//! | 4..8 | `nbytes`, decoded size |
//! | 8..12 | `blocksize` |
//! | 12..16 | `cbytes`, the frame's total size |

mod blosclz;
mod shuffle;

use std::ops::Range;

use crate::error::{Error, Result};

/// Length of a blosc1 header (`BLOSC_MAX_OVERHEAD`).
pub const HEADER_LEN: usize = 16;

/// Blocks whose element count is below this are never split (`MIN_BUFFERSIZE`); buffers
/// smaller than this are stored memcpyed by c-blosc.
const MIN_BUFFERSIZE: usize = 128;
/// Largest typesize whose blocks are split into per-byte streams (`MAX_SPLITS`).
const MAX_SPLITS: usize = 16;
/// c-blosc keeps every size in an `int32_t`.
const MAX_SIZE: usize = i32::MAX as usize;
/// Largest buffer c-blosc compresses (`BLOSC_MAX_BUFFERSIZE`).
const MAX_BUFFERSIZE: usize = MAX_SIZE - HEADER_LEN;

const FLAG_SHUFFLE: u8 = 0x01;
const FLAG_MEMCPYED: u8 = 0x02;
const FLAG_BITSHUFFLE: u8 = 0x04;
const FLAG_RESERVED: u8 = 0x08;
const FLAG_DONT_SPLIT: u8 = 0x10;

/// The 16-byte blosc1 header, fields as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BloscHeader {
    /// Frame format version (2 for every c-blosc 1.x since 1.0; 1 is also accepted).
    pub version: u8,
    /// Version of the compressor's own format.
    pub versionlz: u8,
    /// Flag bits; see the module documentation.
    pub flags: u8,
    /// Element size in bytes used for shuffling and splitting (wins over metadata).
    pub typesize: u8,
    /// Decoded size in bytes.
    pub nbytes: u32,
    /// Decoded size of every block but the last.
    pub blocksize: u32,
    /// Total size of the frame including this header.
    pub cbytes: u32,
}

/// The filter applied to every block before compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shuffle {
    /// No filter.
    None,
    /// Byte shuffle: byte planes of the elements.
    Byte,
    /// Bit shuffle: bit planes of the elements (bitshuffle's layout).
    Bit,
}

/// The codec of a frame's streams (flag bits 5–7). `lz4hc` writes the `Lz4` format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compressor {
    /// blosc's own FastLZ-derived codec (code 0).
    BloscLz,
    /// LZ4 raw blocks, also written by `lz4hc` (code 1).
    Lz4,
    /// Snappy (code 2); recognised but not decoded.
    Snappy,
    /// zlib streams with header (code 3).
    Zlib,
    /// Zstandard frames (code 4).
    Zstd,
}

impl Compressor {
    fn from_code(code: u8) -> Result<Self> {
        Ok(match code {
            0 => Self::BloscLz,
            1 => Self::Lz4,
            2 => Self::Snappy,
            3 => Self::Zlib,
            4 => Self::Zstd,
            _ => return Err(Error::BloscCompressor { cname: format!("format code {code}") }),
        })
    }

    fn code(self) -> u8 {
        match self {
            Self::BloscLz => 0,
            Self::Lz4 => 1,
            Self::Snappy => 2,
            Self::Zlib => 3,
            Self::Zstd => 4,
        }
    }

    /// The compressor's name as blosc spells it (`cname`).
    pub fn name(self) -> &'static str {
        match self {
            Self::BloscLz => "blosclz",
            Self::Lz4 => "lz4",
            Self::Snappy => "snappy",
            Self::Zlib => "zlib",
            Self::Zstd => "zstd",
        }
    }
}

/// Everything needed to decode a frame's blocks independently, derived from the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BloscLayout {
    /// Element size from the header (1..=255).
    pub typesize: usize,
    /// Decoded size in bytes.
    pub nbytes: usize,
    /// Decoded size of every full block.
    pub blocksize: usize,
    /// Number of blocks, counting a short last one.
    pub nblocks: usize,
    /// Bytes in the short last block, 0 if none.
    pub leftover: usize,
    /// The frame's filter: `Byte` when the byte-shuffle flag is set and `typesize > 1`,
    /// else `Bit` when the bit-shuffle flag is set, else `None` (c-blosc's precedence);
    /// always `None` for a memcpyed frame.
    /// See [`BloscLayout::block_shuffle`] for the filter a given block really carries.
    pub shuffle: Shuffle,
    /// Whether full blocks are split into `typesize` streams.
    pub split: bool,
    /// The data follows the header verbatim.
    pub memcpyed: bool,
    /// The streams' codec.
    pub compressor: Compressor,
}

impl BloscLayout {
    /// Decoded length of block `block` (the last may be short); 0 past the end.
    pub fn block_len(&self, block: usize) -> usize {
        if block >= self.nblocks {
            0
        } else if block + 1 == self.nblocks && self.leftover > 0 {
            self.leftover
        } else {
            self.blocksize
        }
    }

    /// Number of streams in block `block`: `typesize` for a full block of a split frame,
    /// else 1.
    pub fn block_streams(&self, block: usize) -> usize {
        let short = block + 1 == self.nblocks && self.leftover > 0;
        if self.split && !short { self.typesize } else { 1 }
    }

    /// The filter to undo on block `block`, exactly as c-blosc 1.x does: byte shuffle
    /// as flagged; bit shuffle only when the block holds at least one element and its
    /// element count is a multiple of 8 (otherwise the block was copied unfiltered). Both
    /// filters act on the whole elements and leave a trailing partial element in place.
    pub fn block_shuffle(&self, block: usize) -> Shuffle {
        let len = self.block_len(block);
        match self.shuffle {
            Shuffle::Bit
                if len >= self.typesize && shuffle::bitshuffle_applies(self.typesize, len) =>
            {
                Shuffle::Bit
            }
            Shuffle::Byte => Shuffle::Byte,
            _ => Shuffle::None,
        }
    }
}

/// One compressed stream of a frame, located for independent decoding.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamRef {
    /// Index of the block the stream belongs to.
    pub block: usize,
    /// The stream's bytes in the frame (after its 4-byte length prefix).
    pub src: Range<usize>,
    /// Where the decoded bytes go within the block, before unshuffling.
    pub offset: usize,
    /// Decoded length of the stream.
    pub len: usize,
    /// Stored uncompressed: copy `src` as is.
    pub raw: bool,
}

fn read_u32(src: &[u8], at: usize) -> Option<u32> {
    let bytes = src.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

fn field(field: &'static str, value: impl Into<u64>, reason: &'static str) -> Error {
    Error::BloscField { field, value: value.into(), reason }
}

/// Parses and checks the 16-byte header of the frame `src`.
///
/// # Errors
/// `BloscFrame` when `src` is shorter than a header, `BloscVersion` for version 0 or a
/// blosc2 frame (version ≥ 3), `BloscField` for a set reserved flag, a zero typesize, a
/// size beyond `i32`, or a `cbytes` that differs from `src.len()`.
pub fn parse_header(src: &[u8]) -> Result<BloscHeader> {
    let Some(head) = src.get(..HEADER_LEN) else {
        return Err(Error::BloscFrame {
            reason: "buffer is shorter than the 16-byte blosc header",
        });
    };
    let header = BloscHeader {
        version: head[0],
        versionlz: head[1],
        flags: head[2],
        typesize: head[3],
        nbytes: read_u32(head, 4).unwrap_or(0),
        blocksize: read_u32(head, 8).unwrap_or(0),
        cbytes: read_u32(head, 12).unwrap_or(0),
    };
    if !(1..=2).contains(&header.version) {
        return Err(Error::BloscVersion { version: header.version });
    }
    if header.flags & FLAG_RESERVED != 0 {
        return Err(field(
            "flags",
            header.flags,
            "reserved bit 0x08 is set (a frame from a newer blosc)",
        ));
    }
    if header.typesize == 0 {
        return Err(field("typesize", header.typesize, "must be at least 1"));
    }
    for (name, value) in
        [("nbytes", header.nbytes), ("blocksize", header.blocksize), ("cbytes", header.cbytes)]
    {
        if value as usize > MAX_SIZE {
            return Err(field(name, value, "exceeds the blosc1 limit of 2^31 - 1"));
        }
    }
    if header.cbytes as usize != src.len() {
        return Err(Error::BloscLength { cbytes: header.cbytes.into(), len: src.len() as u64 });
    }
    Ok(header)
}

/// Parses the header and derives the frame's block layout.
///
/// # Errors
/// [`parse_header`]'s errors; `BloscCompressor` for an unknown compressor code;
/// `BloscField` for a zero blocksize with data, a memcpyed frame whose `cbytes` is not
/// `nbytes + 16`, a frame too short for its block offsets, or a split frame whose
/// blocksize is not a multiple of typesize.
pub fn layout(src: &[u8]) -> Result<BloscLayout> {
    let h = parse_header(src)?;
    let typesize = usize::from(h.typesize);
    let nbytes = h.nbytes as usize;
    let blocksize = h.blocksize as usize;
    let memcpyed = h.flags & FLAG_MEMCPYED != 0;
    let compressor = Compressor::from_code(h.flags >> 5)?;
    let (nblocks, leftover) = if nbytes == 0 {
        (0, 0)
    } else if blocksize == 0 {
        return Err(field("blocksize", h.blocksize, "is zero for a non-empty buffer"));
    } else {
        let leftover = nbytes % blocksize;
        (nbytes / blocksize + usize::from(leftover > 0), leftover)
    };
    // A memcpyed frame is stored unfiltered whatever its shuffle flags say.
    let shuffle = if memcpyed {
        Shuffle::None
    } else if h.flags & FLAG_SHUFFLE != 0 && typesize > 1 {
        Shuffle::Byte
    } else if h.flags & FLAG_BITSHUFFLE != 0 {
        Shuffle::Bit
    } else {
        Shuffle::None
    };
    // The typesize and size conditions keep frames written before the split flag existed
    // readable; c-blosc's decoder applies them too.
    let split = !memcpyed
        && h.flags & FLAG_DONT_SPLIT == 0
        && typesize <= MAX_SPLITS
        && blocksize / typesize >= MIN_BUFFERSIZE;
    if memcpyed {
        if nbytes + HEADER_LEN != src.len() {
            return Err(field(
                "cbytes",
                h.cbytes,
                "a memcpyed frame must be exactly nbytes + 16 bytes",
            ));
        }
    } else if nblocks * 4 + HEADER_LEN > src.len() {
        return Err(field(
            "nbytes",
            h.nbytes,
            "implies more block offsets than the frame can hold",
        ));
    }
    if split && !blocksize.is_multiple_of(typesize) {
        return Err(field(
            "blocksize",
            h.blocksize,
            "is not a multiple of typesize in a split frame",
        ));
    }
    Ok(BloscLayout {
        typesize,
        nbytes,
        blocksize,
        nblocks,
        leftover,
        shuffle,
        split,
        memcpyed,
        compressor,
    })
}

/// Locates every stream of the frame: for each block in order, its `block_streams`
/// streams in order. A memcpyed frame yields one raw stream per block.
///
/// # Errors
/// [`layout`]'s errors, and `BloscField` for a block offset pointing outside the frame
/// or into its header, or a stream length that is negative or runs past the frame.
pub fn streams(src: &[u8]) -> Result<Vec<StreamRef>> {
    let lay = layout(src)?;
    streams_of(src, &lay)
}

fn streams_of(src: &[u8], lay: &BloscLayout) -> Result<Vec<StreamRef>> {
    let mut out = Vec::new();
    for block in 0..lay.nblocks {
        block_streams_into(src, lay, block, &mut out)?;
    }
    Ok(out)
}

/// Appends the streams of block `block` to `out`.
fn block_streams_into(
    src: &[u8],
    lay: &BloscLayout,
    block: usize,
    out: &mut Vec<StreamRef>,
) -> Result<()> {
    if lay.memcpyed {
        let start = HEADER_LEN + block * lay.blocksize;
        let len = lay.block_len(block);
        out.push(StreamRef { block, src: start..start + len, offset: 0, len, raw: true });
        return Ok(());
    }
    let data_start = HEADER_LEN + 4 * lay.nblocks;
    {
        let bstart = read_u32(src, HEADER_LEN + 4 * block).unwrap_or(u32::MAX);
        let mut pos = bstart as usize;
        if pos < data_start || pos > src.len() {
            return Err(field("block start", bstart, "points outside the frame's data"));
        }
        let nsplits = lay.block_streams(block);
        let neblock = lay.block_len(block) / nsplits;
        for split in 0..nsplits {
            let Some(csize) = read_u32(src, pos) else {
                return Err(field(
                    "stream offset",
                    pos as u64,
                    "leaves no room for a stream length",
                ));
            };
            if csize as usize > MAX_SIZE {
                return Err(field("stream length", csize, "is negative"));
            }
            let start = pos + 4;
            let end = start + csize as usize;
            if end > src.len() {
                return Err(field("stream length", csize, "runs past the end of the frame"));
            }
            out.push(StreamRef {
                block,
                src: start..end,
                offset: split * neblock,
                len: neblock,
                raw: csize as usize == neblock,
            });
            pos = end;
        }
    }
    Ok(())
}

/// Decodes the frame `src` into `out[..nbytes]` and returns `nbytes`.
///
/// Snappy frames are recognised but not decoded.
///
/// # Errors
/// [`streams`]'s errors; `OutputSize` when `out` is shorter than `nbytes`;
/// `BloscCompressor` for snappy; `Decompress` or `DecodedSize` for a stream that does not
/// decode to exactly its length.
pub fn decode(src: &[u8], out: &mut [u8]) -> Result<usize> {
    let lay = layout(src)?;
    let Some(out) = out.get_mut(..lay.nbytes) else {
        return Err(Error::OutputSize { expected: lay.nbytes as u64, got: out.len() as u64 });
    };
    if lay.memcpyed {
        out.copy_from_slice(&src[HEADER_LEN..]);
        return Ok(lay.nbytes);
    }
    if lay.compressor == Compressor::Snappy {
        return Err(Error::BloscCompressor { cname: "snappy".to_owned() });
    }
    let mut codecs = Decoders::default();
    // Sized by nbytes too: a corrupt header may claim a huge blocksize for a tiny buffer.
    let mut tmp =
        vec![0u8; if lay.shuffle == Shuffle::None { 0 } else { lay.blocksize.min(lay.nbytes) }];
    let mut streams = Vec::with_capacity(MAX_SPLITS);
    for block in 0..lay.nblocks {
        streams.clear();
        block_streams_into(src, &lay, block, &mut streams)?;
        let start = block * lay.blocksize;
        let len = lay.block_len(block);
        let dst = &mut out[start..start + len];
        let filter = lay.block_shuffle(block);
        let target = if filter == Shuffle::None { &mut *dst } else { &mut tmp[..len] };
        for stream in &streams {
            let piece = &mut target[stream.offset..stream.offset + stream.len];
            let input = &src[stream.src.clone()];
            if stream.raw {
                piece.copy_from_slice(input);
            } else {
                codecs.decompress(lay.compressor, input, piece)?;
            }
        }
        match filter {
            Shuffle::None => {}
            Shuffle::Byte => shuffle::unshuffle(lay.typesize, &tmp[..len], dst),
            Shuffle::Bit => shuffle::bitunshuffle(lay.typesize, &tmp[..len], dst),
        }
    }
    Ok(lay.nbytes)
}

/// Decompression contexts kept across the streams of one frame.
#[derive(Default)]
struct Decoders {
    zstd: Option<zstd::bulk::Decompressor<'static>>,
}

impl Decoders {
    fn decompress(&mut self, compressor: Compressor, input: &[u8], out: &mut [u8]) -> Result<()> {
        let expected = out.len();
        let got = match compressor {
            Compressor::BloscLz => blosclz::decompress(input, out).map_err(|e| {
                Error::Decompress { codec: "blosclz", message: e.message().to_owned() }
            })?,
            Compressor::Lz4 => lz4_flex::block::decompress_into(input, out)
                .map_err(|e| Error::Decompress { codec: "lz4", message: e.to_string() })?,
            Compressor::Zstd => {
                let zstd_error =
                    |e: std::io::Error| Error::Decompress { codec: "zstd", message: e.to_string() };
                let dctx = match &mut self.zstd {
                    Some(d) => d,
                    slot => slot.insert(zstd::bulk::Decompressor::new().map_err(zstd_error)?),
                };
                dctx.decompress_to_buffer(input, out).map_err(zstd_error)?
            }
            Compressor::Zlib => {
                let mut z = flate2::Decompress::new(true);
                let status = z
                    .decompress(input, out, flate2::FlushDecompress::Finish)
                    .map_err(|e| Error::Decompress { codec: "zlib", message: e.to_string() })?;
                if status != flate2::Status::StreamEnd {
                    return Err(Error::Decompress {
                        codec: "zlib",
                        message: "stream does not end within the block".to_owned(),
                    });
                }
                usize::try_from(z.total_out()).unwrap_or(usize::MAX)
            }
            Compressor::Snappy => {
                return Err(Error::BloscCompressor { cname: "snappy".to_owned() });
            }
        };
        if got != expected {
            return Err(Error::DecodedSize {
                stage: "blosc stream",
                expected: expected as u64,
                got: got as u64,
            });
        }
        Ok(())
    }
}

/// Settings for [`encode`], named as in c-blosc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EncodeOptions {
    /// Codec for the streams (snappy cannot be written).
    pub compressor: Compressor,
    /// 0 (store memcpyed) to 9, mapped to each codec's levels as c-blosc does.
    pub clevel: u8,
    /// Filter applied to every block.
    pub shuffle: Shuffle,
    /// Element size, 1..=255.
    pub typesize: usize,
    /// Block size in bytes; 0 chooses it as c-blosc 1.21 does.
    pub blocksize: usize,
    /// Split full blocks into per-byte streams where the format allows it.
    pub split: bool,
}

impl Default for EncodeOptions {
    /// zstd level 5 with byte shuffle, typesize 1, automatic blocks, no split (c-blosc's
    /// default for zstd).
    fn default() -> Self {
        Self {
            compressor: Compressor::Zstd,
            clevel: 5,
            shuffle: Shuffle::Byte,
            typesize: 1,
            blocksize: 0,
            split: false,
        }
    }
}

/// c-blosc 1.21's `compute_blocksize`, with `split` standing for its split decision.
fn auto_blocksize(opts: &EncodeOptions, nbytes: usize) -> usize {
    const L1: usize = 32 * 1024;
    let typesize = opts.typesize;
    if nbytes < typesize {
        return 1;
    }
    let high_ratio = matches!(opts.compressor, Compressor::Zlib | Compressor::Zstd);
    let mut blocksize = nbytes;
    if opts.blocksize > 0 {
        blocksize = opts.blocksize.clamp(MIN_BUFFERSIZE, MAX_SIZE - typesize * 4);
    } else if nbytes >= L1 {
        blocksize = L1 * if high_ratio { 2 } else { 1 };
        blocksize = match opts.clevel {
            0 => blocksize / 4,
            1 => blocksize / 2,
            2 => blocksize,
            3 => blocksize * 2,
            4 | 5 => blocksize * 4,
            6..=8 => blocksize * 8,
            _ => blocksize * if high_ratio { 16 } else { 8 },
        };
    }
    if opts.clevel > 0 && splits(opts, blocksize) {
        blocksize = blocksize.min(1 << 18) * typesize;
        blocksize = blocksize.clamp(1 << 16, 1 << 20);
    }
    blocksize = blocksize.min(nbytes);
    if blocksize > typesize {
        blocksize = blocksize / typesize * typesize;
    }
    blocksize
}

fn splits(opts: &EncodeOptions, blocksize: usize) -> bool {
    opts.split && opts.typesize <= MAX_SPLITS && blocksize / opts.typesize >= MIN_BUFFERSIZE
}

/// Compression contexts kept across the streams of one frame.
struct Encoders<'a> {
    opts: &'a EncodeOptions,
    zstd: Option<zstd::bulk::Compressor<'static>>,
}

impl Encoders<'_> {
    /// Compresses one stream; `None` means store it raw (not smaller than the input).
    fn compress(&mut self, input: &[u8]) -> Result<Option<Vec<u8>>> {
        let clevel = i32::from(self.opts.clevel);
        let encoded = match self.opts.compressor {
            Compressor::BloscLz => return Ok(blosclz::compress(input)),
            Compressor::Lz4 => lz4_flex::block::compress(input),
            Compressor::Zstd => {
                let zstd_error =
                    |e: std::io::Error| Error::Compress { codec: "zstd", message: e.to_string() };
                // c-blosc maps 1..=9 to zstd's odd levels, with 8 and 9 near the top.
                let level = match clevel {
                    9 => zstd::zstd_safe::max_c_level(),
                    8 => zstd::zstd_safe::max_c_level() - 2,
                    l => 2 * l - 1,
                };
                let cctx = match &mut self.zstd {
                    Some(c) => c,
                    slot => slot.insert(zstd::bulk::Compressor::new(level).map_err(zstd_error)?),
                };
                cctx.compress(input).map_err(zstd_error)?
            }
            Compressor::Zlib => {
                use std::io::Write as _;
                let mut enc = flate2::write::ZlibEncoder::new(
                    Vec::new(),
                    flate2::Compression::new(clevel as u32),
                );
                let zlib_error =
                    |e: std::io::Error| Error::Compress { codec: "zlib", message: e.to_string() };
                enc.write_all(input).map_err(zlib_error)?;
                enc.finish().map_err(zlib_error)?
            }
            Compressor::Snappy => {
                return Err(Error::BloscCompressor { cname: "snappy".to_owned() });
            }
        };
        Ok((encoded.len() < input.len()).then_some(encoded))
    }
}

/// Encodes `src` as one blosc1 frame that c-blosc 1.x reads.
///
/// Frames fall back to memcpyed storage, as c-blosc's do, when `clevel` is 0, the buffer
/// is under 128 bytes, or compression would not fit in `nbytes + 16` bytes.
///
/// # Errors
/// `CodecConfig` for a typesize outside 1..=255, a clevel above 9 or a buffer above
/// blosc1's 2 GiB limit; `BloscCompressor` for snappy; `Compress` if a codec library
/// fails.
pub fn encode(src: &[u8], opts: &EncodeOptions) -> Result<Vec<u8>> {
    let config = |field, reason: &str| Error::CodecConfig {
        codec: "blosc",
        field,
        reason: reason.to_owned(),
    };
    if !(1..=255).contains(&opts.typesize) {
        return Err(config("typesize", "must be between 1 and 255"));
    }
    if opts.clevel > 9 {
        return Err(config("clevel", "must be between 0 and 9"));
    }
    if src.len() > MAX_BUFFERSIZE {
        return Err(config("nbytes", "blosc1 frames hold at most 2^31 - 17 bytes"));
    }
    if opts.compressor == Compressor::Snappy {
        return Err(Error::BloscCompressor { cname: "snappy".to_owned() });
    }
    let nbytes = src.len();
    let blocksize = auto_blocksize(opts, nbytes);
    let split = splits(opts, blocksize);
    let mut flags = opts.compressor.code() << 5;
    if !split {
        flags |= FLAG_DONT_SPLIT;
    }
    match opts.shuffle {
        Shuffle::None => {}
        Shuffle::Byte => flags |= FLAG_SHUFFLE,
        Shuffle::Bit => flags |= FLAG_BITSHUFFLE,
    }
    let header = |flags: u8, cbytes: usize| {
        let mut h = Vec::with_capacity(cbytes);
        h.extend_from_slice(&[2, 1, flags, opts.typesize as u8]);
        for v in [nbytes, blocksize, cbytes] {
            h.extend_from_slice(&(v as u32).to_le_bytes());
        }
        h
    };
    let memcpyed = |flags: u8| {
        let mut frame = header(flags | FLAG_MEMCPYED, nbytes + HEADER_LEN);
        frame.extend_from_slice(src);
        frame
    };
    if opts.clevel == 0 || nbytes < MIN_BUFFERSIZE {
        return Ok(memcpyed(flags));
    }
    let lay = BloscLayout {
        typesize: opts.typesize,
        nbytes,
        blocksize,
        nblocks: nbytes.div_ceil(blocksize),
        leftover: nbytes % blocksize,
        shuffle: match opts.shuffle {
            Shuffle::Byte if opts.typesize == 1 => Shuffle::None,
            s => s,
        },
        split,
        memcpyed: false,
        compressor: opts.compressor,
    };
    let limit = nbytes + HEADER_LEN;
    let mut body = Vec::new();
    let mut starts = Vec::with_capacity(lay.nblocks);
    let data_start = HEADER_LEN + 4 * lay.nblocks;
    let mut encoders = Encoders { opts, zstd: None };
    let mut filtered = vec![0u8; blocksize];
    for block in 0..lay.nblocks {
        let start = block * blocksize;
        let len = lay.block_len(block);
        let input = &src[start..start + len];
        let block_bytes: &[u8] = match lay.block_shuffle(block) {
            Shuffle::None => input,
            Shuffle::Byte => {
                shuffle::shuffle(opts.typesize, input, &mut filtered[..len]);
                &filtered[..len]
            }
            Shuffle::Bit => {
                shuffle::bitshuffle(opts.typesize, input, &mut filtered[..len]);
                &filtered[..len]
            }
        };
        starts.push(data_start + body.len());
        let nsplits = lay.block_streams(block);
        for stream in block_bytes.chunks_exact(len / nsplits) {
            match encoders.compress(stream)? {
                Some(c) => {
                    body.extend_from_slice(&(c.len() as u32).to_le_bytes());
                    body.extend_from_slice(&c);
                }
                None => {
                    body.extend_from_slice(&(stream.len() as u32).to_le_bytes());
                    body.extend_from_slice(stream);
                }
            }
        }
        if data_start + body.len() > limit {
            return Ok(memcpyed(flags));
        }
    }
    let cbytes = data_start + body.len();
    let mut frame = header(flags, cbytes);
    for s in starts {
        frame.extend_from_slice(&(s as u32).to_le_bytes());
    }
    frame.extend_from_slice(&body);
    Ok(frame)
}

#[cfg(test)]
mod tests;
