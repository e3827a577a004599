//! Tests of chunk decoding and encoding: every codec, nested shards, transposes, byte
//! orders, fill, size caps, and random chains round-tripped.

use proptest::prelude::*;
use splitmix::SplitMix64;

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
        encode_chunk(&CodecChain::bytes(Some(Endian::Big)), &r, &u16s(&[0x0102, 0x0304, 0x0506]))
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
    assert_eq!(encode_chunk(&chain, &r, &[0; 9]), Err(Error::InputSize { expected: 8, got: 9 }));
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
    assert!(matches!(decode(&gzip, &r, b"not gzip"), Err(Error::Decompress { codec: "gzip", .. })));
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
        bytes_to_bytes: vec![BytesToBytes::Zstd { level: 3, checksum: true }, BytesToBytes::Crc32c],
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
        for shuffle in [BloscShuffle::NoShuffle, BloscShuffle::Shuffle, BloscShuffle::BitShuffle] {
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

/// 96 u16 values `i / 5`, and the bytes numcodecs 0.16 wrote for them with `LZ4()` and
/// `Zlib(level=6)` (`numcodecs.LZ4().encode(data)`, likewise `Zlib`).
fn numcodecs_vectors() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let hex = |s: &str| -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    };
    let data = u16s(&(0..96).map(|i| i / 5).collect::<Vec<u16>>());
    let lz4 = hex(concat!(
        "c000000015000100150102001502020015030200150402001505020015060200150702001508020015",
        "090200150a0200150b0200150c0200150d0200150e0200150f02001510020015110200c01200120012",
        "00120012001300"
    ));
    let zlib = hex(concat!(
        "789c3dc1c70180201000b053508a05cbfebbfa3249c46f7236995d5c2d569bddcdddc3d3e1e5ede31b",
        "1fd8e0036b"
    ));
    (data, lz4, zlib)
}

#[test]
fn numcodecs_lz4_and_zlib_decode_what_numcodecs_wrote() {
    let (data, lz4, zlib) = numcodecs_vectors();
    let r = repr(&[96], DataType::UInt16);
    let lz4_chain = le(vec![BytesToBytes::Lz4 { acceleration: 1 }]);
    let zlib_chain = le(vec![BytesToBytes::Zlib { level: 6 }]);
    assert_eq!(decode(&lz4_chain, &r, &lz4).unwrap(), data);
    assert_eq!(decode(&zlib_chain, &r, &zlib).unwrap(), data);
    // The encoders write what numcodecs reads: the length header, then the block (the
    // block's bytes may differ from liblz4's, so compare by decoding).
    let ours = encode_chunk(&lz4_chain, &r, &data).unwrap();
    assert_eq!(ours[..4], 192u32.to_le_bytes());
    assert_eq!(lz4_flex::block::decompress(&ours[4..], 192).unwrap(), data);
    let ours = encode_chunk(&zlib_chain, &r, &data).unwrap();
    assert_eq!(ours[0], 0x78, "a zlib header");
    assert_eq!(decode(&zlib_chain, &r, &ours).unwrap(), data);
}

#[test]
fn numcodecs_lz4_framing_errors_are_typed() {
    let (_, lz4, zlib) = numcodecs_vectors();
    let r = repr(&[96], DataType::UInt16);
    let chain = le(vec![BytesToBytes::Lz4 { acceleration: 1 }]);
    let with_header = |n: u32| [&n.to_le_bytes()[..], &lz4[4..]].concat();
    // Shorter than its header.
    assert!(matches!(
        decode(&chain, &r, &lz4[..3]),
        Err(Error::DecodedSize { expected: 4, got: 3, .. })
    ));
    // A stated length numcodecs refuses.
    for n in [0, 1 << 31, u32::MAX] {
        assert!(
            matches!(
                decode(&chain, &r, &with_header(n)),
                Err(Error::Decompress { codec: "lz4", .. })
            ),
            "{n}"
        );
    }
    // A stated length other than the chunk's.
    assert_eq!(
        decode(&chain, &r, &with_header(190)),
        Err(Error::DecodedSize { stage: "lz4", expected: 192, got: 190 })
    );
    // A truncated block.
    assert!(matches!(
        decode(&chain, &r, &lz4[..lz4.len() - 3]),
        Err(Error::Decompress { codec: "lz4", .. } | Error::DecodedSize { .. })
    ));
    // A zlib stream cut short, and one with a corrupt checksum.
    let zchain = le(vec![BytesToBytes::Zlib { level: 6 }]);
    assert!(decode(&zchain, &r, &zlib[..zlib.len() - 6]).is_err());
    let mut bad = zlib.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(matches!(decode(&zchain, &r, &bad), Err(Error::Decompress { codec: "zlib", .. })));
    // Under another codec (decoded size unknown), a forged length above the stage cap is
    // refused before it is allocated.
    let forged = with_header(i32::MAX as u32);
    let cap = intermediate_cap(&forged, &[0; 16]);
    assert_eq!(
        undo_bytes(&[BytesToBytes::Lz4 { acceleration: 1 }], &forged, cap).map(|c| c.len()),
        Err(Error::DecodedSize { stage: "lz4", expected: cap as u64, got: i32::MAX as u64 })
    );
    // numcodecs cannot write an empty buffer, so neither does the encoder.
    assert!(matches!(
        encode_bytes(&BytesToBytes::Lz4 { acceleration: 1 }, Vec::new(), 1),
        Err(Error::Compress { codec: "lz4", .. })
    ));
}

#[test]
fn lz4_and_zlib_nest_under_other_codecs() {
    let r = repr(&[10, 12], DataType::UInt16);
    let data = u16s(&(0..120).map(|i| (i * 37 % 11) as u16).collect::<Vec<_>>());
    for chain in [
        le(vec![BytesToBytes::Lz4 { acceleration: 1 }, BytesToBytes::Gzip { level: 1 }]),
        le(vec![BytesToBytes::Zlib { level: 1 }, BytesToBytes::Crc32c]),
        le(vec![
            BytesToBytes::Zstd { level: 1, checksum: false },
            BytesToBytes::Lz4 { acceleration: 1 },
        ]),
    ] {
        let stored = encode_chunk(&chain, &r, &data).unwrap();
        assert_eq!(decode(&chain, &r, &stored).unwrap(), data, "{chain:?}");
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
        .map(|_| match rng.below(6) {
            0 => BytesToBytes::Zstd { level: rng.below(5) as i32 - 1, checksum: chance(rng, 50) },
            1 => BytesToBytes::Gzip { level: rng.below(10) as u32 },
            2 => BytesToBytes::Crc32c,
            3 => BytesToBytes::Zlib { level: rng.below(10) as u32 },
            4 => BytesToBytes::Lz4 { acceleration: 1 },
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
    let stored = CodecChain { array_to_array: array_to_array.clone(), ..CodecChain::bytes(None) }
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

#[test]
fn the_reused_zstd_context_starts_afresh_after_a_failed_chunk() {
    // Each thread keeps one zstd context across chunks: a chunk that fails half-way must
    // leave nothing behind for the next one, and chunks alternate freely.
    let chain = le(vec![BytesToBytes::Zstd { level: 3, checksum: true }]);
    let r = repr(&[64, 64], DataType::UInt16);
    let a: Vec<u16> = (0..4096u32).map(|i| (i * 7 % 65_521) as u16).collect();
    let b: Vec<u16> = (0..4096u32).map(|i| (i / 3) as u16).collect();
    let enc_a = encode_chunk(&chain, &r, &u16s(&a)).unwrap();
    let enc_b = encode_chunk(&chain, &r, &u16s(&b)).unwrap();
    // A corrupt tail: the checksum (or a block) fails after some output was written.
    let mut bad = enc_a.clone();
    let n = bad.len();
    bad[n - 6] ^= 0x5a;
    bad[n - 2] ^= 0xa5;
    for _ in 0..3 {
        assert!(decode(&chain, &r, &bad).is_err());
        assert_eq!(decode(&chain, &r, &enc_b).unwrap(), u16s(&b));
        assert_eq!(decode(&chain, &r, &enc_a).unwrap(), u16s(&a));
        // A truncated frame, then a good one.
        assert!(decode(&chain, &r, &enc_b[..enc_b.len() / 2]).is_err());
        assert_eq!(decode(&chain, &r, &enc_b).unwrap(), u16s(&b));
    }
}
