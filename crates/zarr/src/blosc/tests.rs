//! Unit tests for blosc frames: hand-built frames, frames written by real c-blosc
//! (`tests/data/blosc/`, see `generate.py` there), error cases and proptests.

use std::io::Read as _;

use proptest::prelude::*;

use super::*;

/// Builds a header with the given fields; `cbytes` is patched by [`finish`].
fn header(flags: u8, typesize: u8, nbytes: u32, blocksize: u32) -> Vec<u8> {
    let mut h = vec![2, 1, flags, typesize];
    h.extend_from_slice(&nbytes.to_le_bytes());
    h.extend_from_slice(&blocksize.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h
}

fn finish(mut frame: Vec<u8>) -> Vec<u8> {
    let len = frame.len() as u32;
    frame[12..16].copy_from_slice(&len.to_le_bytes());
    frame
}

/// A non-memcpyed frame whose blocks are lists of raw streams.
fn raw_frame(
    flags: u8,
    typesize: u8,
    nbytes: u32,
    blocksize: u32,
    blocks: &[Vec<&[u8]>],
) -> Vec<u8> {
    let mut frame = header(flags, typesize, nbytes, blocksize);
    let data_start = 16 + 4 * blocks.len();
    let mut body = Vec::new();
    let mut starts = Vec::new();
    for streams in blocks {
        starts.push((data_start + body.len()) as u32);
        for s in streams {
            body.extend_from_slice(&(s.len() as u32).to_le_bytes());
            body.extend_from_slice(s);
        }
    }
    for s in starts {
        frame.extend_from_slice(&s.to_le_bytes());
    }
    frame.extend_from_slice(&body);
    finish(frame)
}

fn decode_vec(frame: &[u8]) -> Result<Vec<u8>> {
    let lay = layout(frame)?;
    // Poisoned so that bytes the decoder fails to write show up.
    let mut out = vec![0xA5; lay.nbytes];
    let n = decode(frame, &mut out)?;
    assert_eq!(n, lay.nbytes);
    Ok(out)
}

#[test]
fn memcpyed_frame_decodes_to_its_payload() {
    let data: Vec<u8> = (0..10).collect();
    let mut frame = header(FLAG_MEMCPYED | FLAG_SHUFFLE, 2, 10, 10);
    frame.extend_from_slice(&data);
    let frame = finish(frame);
    let lay = layout(&frame).unwrap();
    assert!(lay.memcpyed);
    assert_eq!(lay.shuffle, Shuffle::None, "memcpyed data is never filtered");
    assert_eq!(decode_vec(&frame).unwrap(), data);
    assert_eq!(
        streams(&frame).unwrap(),
        vec![StreamRef { block: 0, src: 16..26, offset: 0, len: 10, raw: true }]
    );
}

#[test]
fn short_last_block_is_decoded_and_reported() {
    // typesize 1, 300 bytes in blocks of 128: 128 + 128 + 44, no split (blocks of one
    // typesize-1 element count 128 would split, so DONT_SPLIT is set).
    let data: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
    let blocks = vec![vec![&data[..128]], vec![&data[128..256]], vec![&data[256..]]];
    let frame = raw_frame(FLAG_DONT_SPLIT | (4 << 5), 1, 300, 128, &blocks);
    let lay = layout(&frame).unwrap();
    assert_eq!((lay.nblocks, lay.leftover, lay.split), (3, 44, false));
    assert_eq!(lay.compressor, Compressor::Zstd);
    assert_eq!(lay.block_len(2), 44);
    assert_eq!(decode_vec(&frame).unwrap(), data);
    let s = streams(&frame).unwrap();
    assert_eq!(s.len(), 3);
    assert_eq!((s[2].block, s[2].offset, s[2].len, s[2].raw), (2, 0, 44, true));
    assert_eq!(s[2].src.len(), 44);
}

#[test]
fn split_frame_with_byte_shuffle_and_unsplit_leftover() {
    // 133 u16 values: two full blocks of 128 elements split into 2 byte-plane streams
    // each, then a short block of 5 elements stored as one stream.
    let values: Vec<u16> = (0..261u16).map(|i| i.wrapping_mul(1009)).collect();
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let plane = |range: std::ops::Range<usize>, byte: usize| -> Vec<u8> {
        values[range].iter().map(|v| v.to_le_bytes()[byte]).collect()
    };
    let (b0lo, b0hi) = (plane(0..128, 0), plane(0..128, 1));
    let (b1lo, b1hi) = (plane(128..256, 0), plane(128..256, 1));
    let mut tail = plane(256..261, 0);
    tail.extend(plane(256..261, 1));
    let blocks = vec![vec![&b0lo[..], &b0hi[..]], vec![&b1lo[..], &b1hi[..]], vec![&tail[..]]];
    let frame = raw_frame(FLAG_SHUFFLE | (1 << 5), 2, 522, 256, &blocks);
    let lay = layout(&frame).unwrap();
    assert!(lay.split);
    assert_eq!((lay.nblocks, lay.leftover, lay.shuffle), (3, 10, Shuffle::Byte));
    assert_eq!((lay.block_streams(0), lay.block_streams(2)), (2, 1));
    let s = streams(&frame).unwrap();
    assert_eq!(
        s.iter().map(|s| (s.block, s.offset, s.len)).collect::<Vec<_>>(),
        vec![(0, 0, 128), (0, 128, 128), (1, 0, 128), (1, 128, 128), (2, 0, 10)]
    );
    assert_eq!(decode_vec(&frame).unwrap(), data);
}

#[test]
fn dont_split_flag_and_typesize_limits_disable_splitting() {
    let frame = finish(header(FLAG_DONT_SPLIT, 2, 0, 256));
    assert!(!layout(&frame).unwrap().split);
    // 17-byte elements are never split, nor blocks of fewer than 128 elements.
    let frame = finish([header(0, 17, 17 * 200, 17 * 200), vec![0; 4]].concat());
    assert!(!layout(&frame).unwrap().split);
    let frame = finish([header(0, 4, 400, 400), vec![0; 4]].concat());
    assert!(!layout(&frame).unwrap().split);
    let frame = finish([header(0, 4, 512, 512), vec![0; 4]].concat());
    assert!(layout(&frame).unwrap().split);
}

#[test]
fn bitshuffled_block_is_untransposed() {
    // 8 u16 elements, element 3 has bit 1 of its high byte set: bit plane 9 (byte 1,
    // bit 1), row 0, bit 3 - so shuffled byte 9 is 0b1000.
    let mut shuffled = [0u8; 16];
    shuffled[9] = 1 << 3;
    let frame = raw_frame(FLAG_BITSHUFFLE | FLAG_DONT_SPLIT, 2, 16, 16, &[vec![&shuffled[..]]]);
    assert_eq!(layout(&frame).unwrap().shuffle, Shuffle::Bit);
    let mut want = vec![0u8; 16];
    want[7] = 0b10;
    assert_eq!(decode_vec(&frame).unwrap(), want);
}

#[test]
fn bitshuffle_is_skipped_for_blocks_not_a_multiple_of_8_elements() {
    // 7 u16 elements: c-blosc copies the block unfiltered.
    let data: Vec<u8> = (1..=14).collect();
    let frame = raw_frame(FLAG_BITSHUFFLE | FLAG_DONT_SPLIT, 2, 14, 14, &[vec![&data[..]]]);
    assert_eq!(layout(&frame).unwrap().block_shuffle(0), Shuffle::None);
    assert_eq!(decode_vec(&frame).unwrap(), data);
}

#[test]
fn compressed_streams_of_each_codec_decode() {
    let data: Vec<u8> = (0..4000u32).map(|i| (i / 9) as u8).collect();
    let zstd = zstd::bulk::compress(&data, 3).unwrap();
    let lz4 = lz4_flex::block::compress(&data);
    let blz = blosclz::compress(&data).unwrap();
    let zlib = {
        use std::io::Write as _;
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
        e.write_all(&data).unwrap();
        e.finish().unwrap()
    };
    for (code, stream) in [(4u8, &zstd), (1, &lz4), (0, &blz), (3, &zlib)] {
        let frame = raw_frame(FLAG_DONT_SPLIT | (code << 5), 1, 4000, 4000, &[vec![&stream[..]]]);
        let s = streams(&frame).unwrap();
        assert!(!s[0].raw);
        assert_eq!(decode_vec(&frame).unwrap(), data, "compressor code {code}");
    }
}

#[test]
fn header_errors_are_specific() {
    assert!(matches!(parse_header(&[2, 1, 0]), Err(Error::BloscFrame { .. })));
    let mut blosc2 = finish(header(0, 1, 0, 0));
    blosc2[0] = 3;
    assert_eq!(parse_header(&blosc2), Err(Error::BloscVersion { version: 3 }));
    let mut zero = finish(header(0, 1, 0, 0));
    zero[0] = 0;
    assert_eq!(parse_header(&zero), Err(Error::BloscVersion { version: 0 }));
    let reserved = finish(header(FLAG_RESERVED, 1, 0, 0));
    assert!(matches!(parse_header(&reserved), Err(Error::BloscField { field: "flags", .. })));
    let ts0 = finish(header(0, 0, 0, 0));
    assert!(matches!(parse_header(&ts0), Err(Error::BloscField { field: "typesize", .. })));
    let mut long = finish(header(FLAG_MEMCPYED, 1, 0, 1));
    long.push(0);
    assert_eq!(parse_header(&long), Err(Error::BloscLength { cbytes: 16, len: 17 }));
    let huge = finish(header(0, 1, u32::MAX, 1));
    assert!(matches!(parse_header(&huge), Err(Error::BloscField { field: "nbytes", .. })));
}

#[test]
fn layout_errors_are_specific() {
    let bad_code = finish([header(7 << 5, 1, 1, 1), vec![0; 4]].concat());
    assert_eq!(layout(&bad_code), Err(Error::BloscCompressor { cname: "format code 7".into() }));
    let zero_block = finish([header(0, 1, 10, 0), vec![0; 4]].concat());
    assert!(matches!(layout(&zero_block), Err(Error::BloscField { field: "blocksize", .. })));
    let memcpy_short = finish([header(FLAG_MEMCPYED, 1, 10, 10), vec![0; 9]].concat());
    assert!(matches!(layout(&memcpy_short), Err(Error::BloscField { field: "cbytes", .. })));
    // 1000 blocks cannot have their offsets in a 20-byte frame.
    let many = finish([header(0, 1, 1000, 1), vec![0; 4]].concat());
    assert!(matches!(layout(&many), Err(Error::BloscField { field: "nbytes", .. })));
}

#[test]
fn stream_errors_are_specific() {
    let data = [7u8; 32];
    let good = raw_frame(FLAG_DONT_SPLIT, 1, 32, 32, &[vec![&data[..]]]);
    // Block start pointing into the header.
    let mut f = good.clone();
    f[16..20].copy_from_slice(&4u32.to_le_bytes());
    assert!(matches!(decode_vec(&f), Err(Error::BloscField { field: "block start", .. })));
    // Block start past the end.
    let mut f = good.clone();
    f[16..20].copy_from_slice(&1000u32.to_le_bytes());
    assert!(matches!(decode_vec(&f), Err(Error::BloscField { field: "block start", .. })));
    // Stream length running past the end, and a negative one.
    let mut f = good.clone();
    f[20..24].copy_from_slice(&33u32.to_le_bytes());
    assert!(matches!(decode_vec(&f), Err(Error::BloscField { field: "stream length", .. })));
    let mut f = good.clone();
    f[20..24].copy_from_slice(&(-1i32).to_le_bytes());
    assert!(matches!(decode_vec(&f), Err(Error::BloscField { field: "stream length", .. })));
    // A stream shorter than the block is decompressed (zstd here) and fails.
    let mut f = raw_frame(FLAG_DONT_SPLIT | (4 << 5), 1, 32, 32, &[vec![&data[..31]]]);
    f[4..8].copy_from_slice(&32u32.to_le_bytes());
    assert!(matches!(decode_vec(&f), Err(Error::Decompress { codec: "zstd", .. })));
    // A valid zstd stream of the wrong size.
    let short = zstd::bulk::compress(&data[..20], 1).unwrap();
    let f = raw_frame(FLAG_DONT_SPLIT | (4 << 5), 1, 32, 32, &[vec![&short[..]]]);
    assert_eq!(
        decode_vec(&f),
        Err(Error::DecodedSize { stage: "blosc stream", expected: 32, got: 20 })
    );
    // Output too small.
    let mut out = [0u8; 31];
    assert_eq!(decode(&good, &mut out), Err(Error::OutputSize { expected: 32, got: 31 }));
    // Snappy is recognised and refused.
    let snappy = raw_frame(FLAG_DONT_SPLIT | (2 << 5), 1, 32, 32, &[vec![&data[..16]]]);
    assert_eq!(decode_vec(&snappy), Err(Error::BloscCompressor { cname: "snappy".into() }));
}

#[test]
fn empty_frames_decode_to_nothing() {
    let frame = encode(&[], &EncodeOptions::default()).unwrap();
    assert_eq!(frame.len(), 16);
    assert_eq!(decode(&frame, &mut []), Ok(0));
    assert!(streams(&frame).unwrap().is_empty());
}

#[test]
fn encoder_falls_back_to_memcpy() {
    let tiny = [1u8; 100];
    let f = encode(&tiny, &EncodeOptions::default()).unwrap();
    assert!(layout(&f).unwrap().memcpyed);
    let mut x = 0x9E37_79B9u32;
    let noise: Vec<u8> = (0..5000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let f = encode(&noise, &EncodeOptions { compressor: Compressor::Lz4, ..Default::default() })
        .unwrap();
    assert!(layout(&f).unwrap().memcpyed);
    assert_eq!(decode_vec(&f).unwrap(), noise);
    let level0 = encode(&[5u8; 1000], &EncodeOptions { clevel: 0, ..Default::default() }).unwrap();
    assert_eq!(level0.len(), 1016);
}

#[test]
fn encoder_rejects_bad_options() {
    let bad = |o: EncodeOptions| encode(&[0u8; 256], &o);
    assert!(matches!(
        bad(EncodeOptions { typesize: 0, ..Default::default() }),
        Err(Error::CodecConfig { field: "typesize", .. })
    ));
    assert!(matches!(
        bad(EncodeOptions { typesize: 256, ..Default::default() }),
        Err(Error::CodecConfig { field: "typesize", .. })
    ));
    assert!(matches!(
        bad(EncodeOptions { clevel: 10, ..Default::default() }),
        Err(Error::CodecConfig { field: "clevel", .. })
    ));
    assert_eq!(
        bad(EncodeOptions { compressor: Compressor::Snappy, ..Default::default() }),
        Err(Error::BloscCompressor { cname: "snappy".into() })
    );
}

#[test]
fn encoder_writes_split_multi_block_frames() {
    let values: Vec<u8> = (0..150_000u32).flat_map(|i| ((i / 3) as u16).to_le_bytes()).collect();
    let opts = EncodeOptions {
        compressor: Compressor::Lz4,
        clevel: 5,
        shuffle: Shuffle::Byte,
        typesize: 2,
        blocksize: 0,
        split: true,
    };
    let f = encode(&values, &opts).unwrap();
    let lay = layout(&f).unwrap();
    assert!(lay.split && lay.nblocks > 1 && lay.leftover > 0, "{lay:?}");
    assert!(f.len() < values.len() / 4);
    assert_eq!(decode_vec(&f).unwrap(), values);
}

// ---- frames written by c-blosc 1.21.6 (numcodecs 0.15.1) ----

fn data_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/blosc")
}

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    cname: String,
    clevel: u8,
    shuffle: String,
    typesize: usize,
    forced_blocksize: usize,
    flags: u8,
    blocksize: usize,
    decoded_len: usize,
    decoded_crc32: u32,
    has_bin: bool,
}

fn cases() -> Vec<Case> {
    let json = std::fs::read(data_dir().join("cases.json")).unwrap();
    serde_json::from_slice(&json).unwrap()
}

fn shuffle_named(s: &str) -> Shuffle {
    match s {
        "byte" => Shuffle::Byte,
        "bit" => Shuffle::Bit,
        _ => Shuffle::None,
    }
}

#[test]
fn c_blosc_frames_decode_exactly() {
    let cases = cases();
    assert_eq!(cases.len(), 18);
    for case in &cases {
        let frame = std::fs::read(data_dir().join(format!("{}.blosc", case.name))).unwrap();
        let lay = layout(&frame).unwrap();
        assert_eq!(lay.typesize, case.typesize, "{}", case.name);
        let out = decode_vec(&frame).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(out.len(), case.decoded_len, "{}", case.name);
        let mut crc = flate2::Crc::new();
        crc.update(&out);
        assert_eq!(crc.sum(), case.decoded_crc32, "{}", case.name);
        if case.has_bin {
            let gz = std::fs::read(data_dir().join(format!("{}.bin.gz", case.name))).unwrap();
            let mut want = Vec::new();
            flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut want).unwrap();
            assert_eq!(out, want, "{}", case.name);
        }
        // Every byte of the frame after the offsets belongs to exactly one stream.
        if !lay.memcpyed {
            let s = streams(&frame).unwrap();
            let covered: usize = s.iter().map(|s| s.src.len() + 4).sum();
            assert_eq!(covered + 16 + 4 * lay.nblocks, frame.len(), "{}", case.name);
        }
    }
}

#[test]
fn c_blosc_fixtures_cover_the_interesting_layouts() {
    let mut split_multi = false;
    let mut bit_leftover_copied = false;
    let mut memcpyed = false;
    for case in cases() {
        let frame = std::fs::read(data_dir().join(format!("{}.blosc", case.name))).unwrap();
        let lay = layout(&frame).unwrap();
        split_multi |= lay.split && lay.nblocks > 1 && lay.leftover > 0;
        bit_leftover_copied |= lay.shuffle == Shuffle::Bit
            && lay.leftover > 0
            && lay.block_shuffle(lay.nblocks - 1) == Shuffle::None;
        memcpyed |= lay.memcpyed;
    }
    assert!(split_multi && bit_leftover_copied && memcpyed);
}

#[test]
fn encoder_reproduces_c_blosc_block_and_split_choices() {
    for case in cases() {
        let compressor = match case.cname.as_str() {
            "zstd" => Compressor::Zstd,
            "lz4" | "lz4hc" => Compressor::Lz4,
            "blosclz" => Compressor::BloscLz,
            "zlib" => Compressor::Zlib,
            other => panic!("unexpected cname {other}"),
        };
        if case.cname == "lz4hc" {
            // lz4hc counts as a high-ratio codec for block sizing; Compressor has no
            // separate variant for it.
            continue;
        }
        let opts = EncodeOptions {
            compressor,
            clevel: case.clevel,
            shuffle: shuffle_named(&case.shuffle),
            typesize: case.typesize,
            blocksize: case.forced_blocksize,
            // c-blosc's default split mode splits every codec but zstd.
            split: compressor != Compressor::Zstd,
        };
        let bs = auto_blocksize(&opts, case.decoded_len);
        assert_eq!(bs, case.blocksize, "{}", case.name);
        let memcpyed = case.flags & FLAG_MEMCPYED != 0;
        if !memcpyed {
            assert_eq!(splits(&opts, bs), case.flags & FLAG_DONT_SPLIT == 0, "{}", case.name);
        }
    }
}

// ---- proptests ----

fn frame_strategy() -> impl Strategy<Value = (Vec<u8>, EncodeOptions)> {
    let compressor = prop_oneof![
        Just(Compressor::Zstd),
        Just(Compressor::Lz4),
        Just(Compressor::BloscLz),
        Just(Compressor::Zlib)
    ];
    let shuffle = prop_oneof![Just(Shuffle::None), Just(Shuffle::Byte), Just(Shuffle::Bit)];
    (
        compressor,
        0u8..=6,
        shuffle,
        prop_oneof![Just(1usize), Just(2), Just(4), Just(8), 1usize..=40],
        prop_oneof![Just(0usize), 1usize..5000],
        any::<bool>(),
        0usize..6000,
        any::<u64>(),
        0u32..4,
    )
        .prop_map(
            |(compressor, clevel, shuffle, typesize, blocksize, split, len, seed, smooth)| {
                let mut x = seed | 1;
                let data = (0..len)
                    .map(|i| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        // Mix noise with runs so every codec path (raw, compressed) occurs.
                        if smooth > 0 {
                            ((i / (smooth as usize * 3)) as u8).wrapping_add((x % 3) as u8)
                        } else {
                            x as u8
                        }
                    })
                    .collect();
                (data, EncodeOptions { compressor, clevel, shuffle, typesize, blocksize, split })
            },
        )
}

proptest! {
    #[test]
    fn parsers_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_header(&bytes);
        let _ = layout(&bytes);
        let _ = streams(&bytes);
        let mut out = vec![0u8; 4096];
        let _ = decode(&bytes, &mut out);
    }

    #[test]
    fn parsers_never_panic_on_plausible_headers(
        flags in any::<u8>(), typesize in any::<u8>(), nbytes in 0u32..5000, blocksize in 0u32..5000,
        body in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let frame = finish([header(flags, typesize, nbytes, blocksize), body].concat());
        let mut out = vec![0u8; 5000];
        let _ = streams(&frame);
        let _ = decode(&frame, &mut out);
    }

    #[test]
    fn corrupted_valid_frames_never_panic((data, opts) in frame_strategy(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4)) {
        let mut frame = encode(&data, &opts).unwrap();
        for (at, value) in flips {
            let i = at % frame.len();
            frame[i] = value;
        }
        let mut out = vec![0u8; data.len()];
        let _ = streams(&frame);
        let _ = decode(&frame, &mut out);
    }

    #[test]
    fn encode_decode_round_trips((data, opts) in frame_strategy()) {
        let frame = encode(&data, &opts).unwrap();
        let lay = layout(&frame).unwrap();
        prop_assert_eq!(lay.nbytes, data.len());
        prop_assert_eq!(lay.typesize, opts.typesize);
        prop_assert!(frame.len() <= data.len() + 16);
        let mut out = vec![0xA5; data.len()];
        prop_assert_eq!(decode(&frame, &mut out), Ok(data.len()));
        prop_assert_eq!(out, data);
    }
}
