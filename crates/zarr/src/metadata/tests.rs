//! Tests of `zarr.json` parsing: every field, spelling and refusal.
use super::*;
use crate::codec::{ArrayToArray, BloscCname, BloscShuffle, BytesToBytes, Endian, IndexLocation};
use proptest::prelude::*;

/// A document as zarr-python 3 writes it for a sharded uint16 array.
const ZARR_PYTHON_SHARDED: &str = r#"{
  "shape": [100, 60], "data_type": "uint16",
  "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [50, 30]}},
  "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
  "fill_value": 7,
  "codecs": [{"name": "sharding_indexed", "configuration": {
      "chunk_shape": [10, 15],
      "codecs": [{"name": "bytes", "configuration": {"endian": "little"}},
                 {"name": "blosc", "configuration": {"typesize": 2, "cname": "zstd", "clevel": 5,
                                                      "shuffle": "bitshuffle", "blocksize": 0}}],
      "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}],
      "index_location": "start"}}],
  "attributes": {"resolution": [4, 4], "nested": {"a": null}},
  "dimension_names": ["z", null],
  "zarr_format": 3, "node_type": "array", "storage_transformers": []
}"#;

fn doc_with(key: &str, value: Value) -> Vec<u8> {
    let mut v: Value = serde_json::from_str(ZARR_PYTHON_SHARDED).unwrap();
    v.as_object_mut().unwrap().insert(key.into(), value);
    serde_json::to_vec(&v).unwrap()
}

fn plain(dtype: &str, fill: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "zarr_format": 3, "node_type": "array", "shape": [4], "data_type": dtype,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [2]}},
        "chunk_key_encoding": {"name": "default"},
        "fill_value": fill,
        "codecs": [{"name": "bytes", "configuration": {"endian": "big"}}],
    }))
    .unwrap()
}

fn fill(dtype: &str, fill: Value) -> Result<Vec<u8>> {
    ArrayMetadata::parse(&plain(dtype, fill)).map(|m| m.fill_value.as_ne_bytes().to_vec())
}

#[test]
fn parses_a_zarr_python_sharded_document() {
    let m = ArrayMetadata::parse(ZARR_PYTHON_SHARDED.as_bytes()).unwrap();
    assert_eq!(m.shape, vec![100, 60]);
    assert_eq!(m.data_type, DataType::UInt16);
    assert_eq!(m.chunk_shape, vec![50, 30]);
    assert_eq!(m.chunk_key_encoding, ChunkKeyEncoding::Default { separator: Separator::Slash });
    assert_eq!(m.fill_value.as_ne_bytes(), 7u16.to_ne_bytes());
    assert_eq!(m.dimension_names, Some(vec![Some("z".to_owned()), None]));
    assert_eq!(m.attributes["resolution"], json!([4, 4]));
    let ArrayToBytes::Sharding(s) = &m.codecs.array_to_bytes else { panic!("not sharded") };
    assert_eq!(s.chunk_shape, vec![10, 15]);
    assert_eq!(s.index_location, IndexLocation::Start);
    assert_eq!(s.codecs.array_to_bytes, ArrayToBytes::Bytes { endian: Some(Endian::Little) });
    assert_eq!(
        s.codecs.bytes_to_bytes,
        vec![BytesToBytes::Blosc {
            cname: BloscCname::Zstd,
            clevel: 5,
            shuffle: BloscShuffle::BitShuffle,
            typesize: Some(2),
            blocksize: 0
        }]
    );
    assert_eq!(s.index_codecs.bytes_to_bytes, vec![BytesToBytes::Crc32c]);
    assert_eq!(ArrayMetadata::parse(m.to_json().as_bytes()).unwrap(), m);
}

#[test]
fn groups_and_other_formats_are_rejected_by_name() {
    let group = br#"{"zarr_format": 3, "node_type": "group", "attributes": {}}"#;
    assert_eq!(ArrayMetadata::parse(group), Err(Error::NotAnArray { node_type: "group".into() }));
    let zarray = br#"{"zarr_format": 2, "shape": [10], "chunks": [5], "dtype": "<u2",
        "compressor": null, "fill_value": 0, "order": "C", "filters": null}"#;
    assert_eq!(
        ArrayMetadata::parse(zarray),
        Err(Error::UnsupportedFormat { zarr_format: 2, expected: 3 })
    );
    assert_eq!(
        ArrayMetadata::parse(&doc_with("zarr_format", json!(4))),
        Err(Error::UnsupportedFormat { zarr_format: 4, expected: 3 })
    );
    assert_eq!(ArrayMetadata::parse(b"{}"), Err(Error::MissingField { field: "zarr_format" }));
    assert!(matches!(ArrayMetadata::parse(b"{\"zarr"), Err(Error::Json { line: 1, .. })));
    assert!(matches!(ArrayMetadata::parse(b"[1]"), Err(Error::InvalidField { .. })));
}

#[test]
fn rank_must_be_1_to_32() {
    assert_eq!(ArrayMetadata::parse(&doc_with("shape", json!([]))), Err(Error::Rank { rank: 0 }));
    assert_eq!(
        ArrayMetadata::parse(&doc_with("shape", json!(vec![1; 33]))),
        Err(Error::Rank { rank: 33 })
    );
    let m = ArrayMetadata::parse(
        &serde_json::to_vec(&json!({
            "zarr_format": 3, "node_type": "array", "shape": vec![2; 32], "data_type": "uint8",
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": vec![1; 32]}},
            "chunk_key_encoding": {"name": "default"}, "fill_value": 0,
            "codecs": [{"name": "bytes"}],
        }))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(m.shape.len(), 32);
    assert_eq!(m.codecs.array_to_bytes, ArrayToBytes::Bytes { endian: None });
    // The chunk grid's rank must match.
    assert!(matches!(
        ArrayMetadata::parse(&doc_with("shape", json!([100, 60, 1]))),
        Err(Error::InvalidField { field: "chunk_grid.configuration.chunk_shape", .. })
    ));
}

#[test]
fn every_data_type_parses() {
    for dt in DataType::ALL {
        let f = if dt == DataType::Bool { json!(false) } else { json!(0) };
        let m = ArrayMetadata::parse(&plain(dt.name(), f)).unwrap();
        assert_eq!(m.data_type, dt);
        assert_eq!(m.fill_value, FillValue::zero(dt));
    }
    assert_eq!(
        ArrayMetadata::parse(&plain("complex64", json!(0))),
        Err(Error::UnsupportedDataType { name: "complex64".into() })
    );
    assert_eq!(
        ArrayMetadata::parse(&plain("<u2", json!(0))),
        Err(Error::UnsupportedDataType { name: "<u2".into() })
    );
}

#[test]
fn integer_fill_values_are_range_checked() {
    assert_eq!(fill("int8", json!(-128)).unwrap(), (-128i8).to_ne_bytes());
    assert_eq!(fill("int16", json!(-300)).unwrap(), (-300i16).to_ne_bytes());
    assert_eq!(fill("int32", json!(i32::MIN)).unwrap(), i32::MIN.to_ne_bytes());
    assert_eq!(fill("int64", json!(i64::MIN)).unwrap(), i64::MIN.to_ne_bytes());
    assert_eq!(fill("uint8", json!(255)).unwrap(), [255]);
    assert_eq!(fill("uint16", json!(65535)).unwrap(), 65535u16.to_ne_bytes());
    assert_eq!(fill("uint32", json!(u32::MAX)).unwrap(), u32::MAX.to_ne_bytes());
    assert_eq!(fill("uint64", json!(u64::MAX)).unwrap(), u64::MAX.to_ne_bytes());
    let range = |dt| {
        Err(Error::FillValue { data_type: dt, reason: "integer out of range for the data type" })
    };
    assert_eq!(fill("int8", json!(128)), range("int8"));
    assert_eq!(fill("int64", json!(u64::MAX)), range("int64"));
    assert_eq!(fill("uint8", json!(256)), range("uint8"));
    assert_eq!(fill("uint16", json!(-1)), range("uint16"));
    assert_eq!(fill("uint32", json!(1u64 << 32)), range("uint32"));
    assert!(matches!(fill("int32", json!(1.5)), Err(Error::FillValue { .. })));
    assert!(matches!(fill("int32", json!("NaN")), Err(Error::FillValue { .. })));
    assert!(matches!(fill("uint8", json!(true)), Err(Error::FillValue { .. })));
}

#[test]
fn bool_fill_values_are_booleans() {
    assert_eq!(fill("bool", json!(true)).unwrap(), [1]);
    assert_eq!(fill("bool", json!(false)).unwrap(), [0]);
    assert!(matches!(fill("bool", json!(1)), Err(Error::FillValue { data_type: "bool", .. })));
}

#[test]
fn float_fill_values_in_every_spelling() {
    assert_eq!(fill("float32", json!(1.5)).unwrap(), 1.5f32.to_ne_bytes());
    assert_eq!(fill("float32", json!(-3)).unwrap(), (-3.0f32).to_ne_bytes());
    assert_eq!(fill("float64", json!(0.1)).unwrap(), 0.1f64.to_ne_bytes());
    assert_eq!(fill("float64", json!(-0.0)).unwrap(), (-0.0f64).to_ne_bytes());
    assert_eq!(fill("float32", json!("NaN")).unwrap(), 0x7fc0_0000u32.to_ne_bytes());
    assert_eq!(fill("float64", json!("NaN")).unwrap(), 0x7ff8_0000_0000_0000u64.to_ne_bytes());
    assert_eq!(fill("float16", json!("NaN")).unwrap(), 0x7e00u16.to_ne_bytes());
    assert_eq!(fill("bfloat16", json!("NaN")).unwrap(), 0x7fc0u16.to_ne_bytes());
    assert_eq!(fill("float32", json!("Infinity")).unwrap(), f32::INFINITY.to_ne_bytes());
    assert_eq!(fill("float64", json!("-Infinity")).unwrap(), f64::NEG_INFINITY.to_ne_bytes());
    assert_eq!(fill("float16", json!("-Infinity")).unwrap(), half::f16::NEG_INFINITY.to_ne_bytes());
    assert_eq!(fill("float16", json!(0.5)).unwrap(), half::f16::from_f32(0.5).to_ne_bytes());
    assert_eq!(fill("bfloat16", json!(-2.0)).unwrap(), half::bf16::from_f32(-2.0).to_ne_bytes());
    // Hex bit patterns keep NaN payloads exactly.
    assert_eq!(fill("float32", json!("0x7fc00001")).unwrap(), 0x7fc0_0001u32.to_ne_bytes());
    assert_eq!(
        fill("float64", json!("0xFFF0000000000001")).unwrap(),
        0xfff0_0000_0000_0001u64.to_ne_bytes()
    );
    assert_eq!(fill("float16", json!("0x3c00")).unwrap(), half::f16::ONE.to_ne_bytes());
    let bad = |dt, v: Value| matches!(fill(dt, v), Err(Error::FillValue { .. }));
    assert!(bad("float32", json!("0x7fc0")), "too short");
    assert!(bad("float16", json!("0x7fc00000")), "too long");
    assert!(bad("float32", json!("0x7fc0000g")), "not hex");
    assert!(bad("float32", json!("0x+fc00000")), "sign");
    assert!(bad("float32", json!("nan")), "wrong case");
    assert!(bad("float32", json!(true)));
    assert!(bad("float16", json!(1e10)), "overflows f16");
    assert!(bad("float32", json!(1e300)), "overflows f32");
    assert!(bad("uint8", json!("0xff")), "hex is for floats only");
}

#[test]
fn chunk_key_encodings_and_grids() {
    let cke = |v: Value| {
        ArrayMetadata::parse(&doc_with("chunk_key_encoding", v)).map(|m| m.chunk_key_encoding)
    };
    assert_eq!(
        cke(json!({"name": "default"})),
        Ok(ChunkKeyEncoding::Default { separator: Separator::Slash })
    );
    assert_eq!(
        cke(json!({"name": "default", "configuration": {"separator": "."}})),
        Ok(ChunkKeyEncoding::Default { separator: Separator::Dot })
    );
    assert_eq!(cke(json!({"name": "v2"})), Ok(ChunkKeyEncoding::V2 { separator: Separator::Dot }));
    assert_eq!(
        cke(json!({"name": "v2", "configuration": {"separator": "/"}})),
        Ok(ChunkKeyEncoding::V2 { separator: Separator::Slash })
    );
    assert_eq!(cke(json!("v2")), Ok(ChunkKeyEncoding::V2 { separator: Separator::Dot }));
    assert!(matches!(
        cke(json!({"name": "default", "configuration": {"separator": "-"}})),
        Err(Error::InvalidField { .. })
    ));
    assert_eq!(
        cke(json!({"name": "hashed"})),
        Err(Error::UnsupportedGrid { what: "chunk key encoding", name: "hashed".into() })
    );
    assert_eq!(
        ArrayMetadata::parse(&doc_with(
            "chunk_grid",
            json!({"name": "rectilinear", "configuration": {}})
        )),
        Err(Error::UnsupportedGrid { what: "chunk grid", name: "rectilinear".into() })
    );
    assert!(matches!(
        ArrayMetadata::parse(&doc_with(
            "chunk_grid",
            json!({"name": "regular", "configuration": {"chunk_shape": [0, 30]}})
        )),
        Err(Error::InvalidField { .. })
    ));
}

#[test]
fn unknown_keys_need_must_understand_false() {
    assert_eq!(
        ArrayMetadata::parse(&doc_with("shiny", json!({"name": "x"}))),
        Err(Error::UnknownField { field: "shiny".into() })
    );
    assert!(
        ArrayMetadata::parse(&doc_with("shiny", json!({"name": "x", "must_understand": false})))
            .is_ok()
    );
    assert_eq!(
        ArrayMetadata::parse(&doc_with("storage_transformers", json!([{"name": "sharding"}]))),
        Err(Error::UnsupportedStorageTransformer { name: "sharding".into() })
    );
}

#[test]
fn dimension_names_and_attributes() {
    let p = |k, v| ArrayMetadata::parse(&doc_with(k, v));
    assert_eq!(p("dimension_names", json!(null)).unwrap().dimension_names, None);
    assert!(matches!(
        p("dimension_names", json!(["z"])),
        Err(Error::InvalidField { field: "dimension_names", .. })
    ));
    assert!(matches!(
        p("dimension_names", json!(["z", 1])),
        Err(Error::InvalidField { field: "dimension_names", .. })
    ));
    assert!(matches!(
        p("attributes", json!([1])),
        Err(Error::InvalidField { field: "attributes", .. })
    ));
    let mut v: Value = serde_json::from_str(ZARR_PYTHON_SHARDED).unwrap();
    v.as_object_mut().unwrap().remove("attributes");
    assert!(ArrayMetadata::parse(&serde_json::to_vec(&v).unwrap()).unwrap().attributes.is_empty());
}

fn codecs(list: Value) -> Result<CodecChain> {
    ArrayMetadata::parse(&doc_with("codecs", list)).map(|m| m.codecs)
}

#[test]
fn codec_chain_order_is_enforced() {
    let bytes = json!({"name": "bytes", "configuration": {"endian": "little"}});
    let zstd = json!({"name": "zstd", "configuration": {"level": 3, "checksum": true}});
    let tr = json!({"name": "transpose", "configuration": {"order": [1, 0]}});
    let ok = codecs(json!([tr, bytes, zstd, "crc32c"])).unwrap();
    assert_eq!(ok.array_to_array, vec![ArrayToArray::Transpose { order: vec![1, 0] }]);
    assert_eq!(
        ok.bytes_to_bytes,
        vec![BytesToBytes::Zstd { level: 3, checksum: true }, BytesToBytes::Crc32c]
    );
    for bad in
        [json!([]), json!([zstd]), json!([bytes, bytes]), json!([bytes, tr]), json!([zstd, bytes])]
    {
        assert!(matches!(codecs(bad.clone()), Err(Error::CodecChain { .. })), "{bad}");
    }
    assert_eq!(
        codecs(json!([bytes, {"name": "lzma"}])),
        Err(Error::Unsupported { codec: "lzma".into() })
    );
    assert_eq!(codecs(json!(["vlen-utf8"])), Err(Error::Unsupported { codec: "vlen-utf8".into() }));
    assert!(matches!(
        codecs(json!({"name": "bytes"})),
        Err(Error::InvalidField { field: "codecs", .. })
    ));
    assert!(matches!(codecs(json!([3])), Err(Error::InvalidField { field: "codecs", .. })));
}

#[test]
fn codec_configurations_are_validated() {
    let cfg_err = |list: Value, codec: &str, field: &str| match codecs(list) {
        Err(Error::CodecConfig { codec: c, field: f, .. }) => c == codec && f == field,
        _ => false,
    };
    // uint16 needs an endian.
    assert!(cfg_err(json!(["bytes"]), "bytes", "endian"));
    assert!(cfg_err(
        json!([{"name": "bytes", "configuration": {"endian": "middle"}}]),
        "bytes",
        "endian"
    ));
    let b = json!({"name": "bytes", "configuration": {"endian": "big"}});
    for order in [json!([0, 0]), json!([0]), json!([0, 2]), json!([1, 0, 2]), json!("C")] {
        assert!(cfg_err(
            json!([{"name": "transpose", "configuration": {"order": order}}, b]),
            "transpose",
            "order"
        ));
    }
    assert!(cfg_err(json!([b, {"name": "gzip", "configuration": {"level": 10}}]), "gzip", "level"));
    assert!(cfg_err(json!([b, {"name": "gzip"}]), "gzip", "level"));
    assert!(cfg_err(json!([b, {"name": "zstd", "configuration": {"level": 23}}]), "zstd", "level"));
    assert!(cfg_err(
        json!([b, {"name": "zstd", "configuration": {"checksum": 1}}]),
        "zstd",
        "checksum"
    ));
    assert!(cfg_err(
        json!([b, {"name": "zstd", "configuration": {"speed": 1}}]),
        "zstd",
        "configuration"
    ));
    let blosc = |cname: &str, shuffle: &str, clevel: u64| json!([b, {"name": "blosc", "configuration": {"cname": cname, "clevel": clevel, "shuffle": shuffle, "typesize": 2, "blocksize": 0}}]);
    for cname in BloscCname::ALL {
        for shuffle in BloscShuffle::ALL {
            let c = codecs(blosc(cname.name(), shuffle.name(), 9)).unwrap();
            assert_eq!(
                c.bytes_to_bytes,
                vec![BytesToBytes::Blosc {
                    cname,
                    clevel: 9,
                    shuffle,
                    typesize: Some(2),
                    blocksize: 0
                }]
            );
        }
    }
    assert!(cfg_err(blosc("lzma", "shuffle", 5), "blosc", "cname"));
    assert!(cfg_err(blosc("lz4", "byteshuffle", 5), "blosc", "shuffle"));
    assert!(cfg_err(blosc("lz4", "shuffle", 10), "blosc", "clevel"));
}

#[test]
fn sharding_nests_and_checks_shapes() {
    let b = json!({"name": "bytes", "configuration": {"endian": "little"}});
    let idx = json!([b, {"name": "crc32c"}]);
    let shard = |chunk: Value, inner: Value, loc: &str| {
        json!({"name": "sharding_indexed", "configuration": {
            "chunk_shape": chunk, "codecs": inner, "index_codecs": idx, "index_location": loc}})
    };
    // Three levels: 50x30 shard → 25x15 → 5x5 chunks.
    let deep = shard(json!([25, 15]), json!([shard(json!([5, 5]), json!([b]), "start")]), "end");
    let c = codecs(json!([deep])).unwrap();
    let ArrayToBytes::Sharding(outer) = c.array_to_bytes else { panic!("not sharded") };
    assert_eq!(outer.index_location, IndexLocation::End);
    let ArrayToBytes::Sharding(inner) = &outer.codecs.array_to_bytes else { panic!("not nested") };
    assert_eq!(inner.chunk_shape, vec![5, 5]);
    assert_eq!(inner.index_location, IndexLocation::Start);
    let cfg_field = |v: Value| match codecs(json!([v])) {
        Err(Error::CodecConfig { codec: "sharding_indexed", field, .. }) => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(cfg_field(shard(json!([7, 15]), json!([b]), "end")), "chunk_shape");
    assert_eq!(cfg_field(shard(json!([5]), json!([b]), "end")), "chunk_shape");
    assert_eq!(cfg_field(shard(json!([0, 15]), json!([b]), "end")), "chunk_shape");
    assert_eq!(cfg_field(shard(json!([5, 5]), json!([b]), "middle")), "index_location");
    // Index codecs must be bytes (+ crc32c).
    let zstd_index = json!({"name": "sharding_indexed", "configuration": {
        "chunk_shape": [5, 5], "codecs": [b], "index_codecs": [b, {"name": "zstd"}]}});
    assert!(matches!(codecs(json!([zstd_index])), Err(Error::CodecChain { .. })));
    // Default index_location is end.
    let no_loc = json!({"name": "sharding_indexed", "configuration": {
        "chunk_shape": [5, 5], "codecs": [b], "index_codecs": idx}});
    let ArrayToBytes::Sharding(s) = codecs(json!([no_loc])).unwrap().array_to_bytes else {
        panic!()
    };
    assert_eq!(s.index_location, IndexLocation::End);
}

#[test]
fn builders_produce_valid_metadata() {
    let inner = CodecChain::little_endian(vec![BytesToBytes::Zstd { level: 1, checksum: false }]);
    let m = ArrayMetadata::sharded(
        vec![10, 10],
        vec![10, 10],
        vec![5, 5],
        DataType::Float32,
        inner,
        FillValue::zero(DataType::Float32),
    )
    .unwrap();
    assert_eq!(ArrayMetadata::parse(m.to_json().as_bytes()).unwrap(), m);
    assert!(matches!(
        ArrayMetadata::sharded(
            vec![10],
            vec![10],
            vec![3],
            DataType::UInt8,
            CodecChain::bytes(None),
            FillValue::zero(DataType::UInt8)
        ),
        Err(Error::CodecConfig { codec: "sharding_indexed", field: "chunk_shape", .. })
    ));
}

pub(super) fn arb_fill(dt: DataType) -> impl Strategy<Value = FillValue> {
    prop::collection::vec(any::<u8>(), dt.size()).prop_map(move |mut b| {
        if dt == DataType::Bool {
            b[0] &= 1;
        }
        FillValue::from_ne_bytes(dt, &b).unwrap()
    })
}

pub(super) fn arb_bytes_to_bytes() -> impl Strategy<Value = BytesToBytes> {
    prop_oneof![
        (-5i32..=22, any::<bool>())
            .prop_map(|(level, checksum)| BytesToBytes::Zstd { level, checksum }),
        (0u32..=9).prop_map(|level| BytesToBytes::Gzip { level }),
        (0u32..=9).prop_map(|level| BytesToBytes::Zlib { level }),
        any::<i32>().prop_map(|acceleration| BytesToBytes::Lz4 { acceleration }),
        Just(BytesToBytes::Crc32c),
        (0usize..6, 0u8..=9, 0usize..3, prop::option::of(1u32..16), 0u64..100_000).prop_map(
            |(c, clevel, s, typesize, blocksize)| BytesToBytes::Blosc {
                cname: BloscCname::ALL[c],
                clevel,
                shuffle: BloscShuffle::ALL[s],
                typesize,
                blocksize
            }
        ),
    ]
}

fn arb_metadata() -> impl Strategy<Value = ArrayMetadata> {
    (
        0usize..13,
        prop::collection::vec((1u64..50, 1u64..4, 1u64..3), 1..4),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_flat_map(|(d, dims, sharded, transpose)| {
            let dt = DataType::ALL[d];
            let shape: Vec<u64> = dims.iter().map(|x| x.0).collect();
            let inner: Vec<u64> = dims.iter().map(|x| x.1).collect();
            let outer: Vec<u64> = dims.iter().map(|x| x.1 * x.2).collect();
            let rank = shape.len();
            (
                Just((dt, shape, inner, outer, sharded)),
                arb_fill(dt),
                prop::collection::vec(arb_bytes_to_bytes(), 0..3),
                if transpose {
                    Just((0..rank).rev().collect::<Vec<_>>()).boxed()
                } else {
                    Just(vec![]).boxed()
                },
                any::<bool>(),
                prop::option::of(prop::collection::vec(prop::option::of("[a-z]{0,3}"), rank)),
                0usize..4,
            )
        })
        .prop_map(|((dt, shape, inner, outer, sharded), fill, b2b, order, big, names, cke)| {
            let endian = if dt.size() == 1 && !big {
                None
            } else if big {
                Some(Endian::Big)
            } else {
                Some(Endian::Little)
            };
            let mut chain = CodecChain { bytes_to_bytes: b2b, ..CodecChain::bytes(endian) };
            if !order.is_empty() {
                chain.array_to_array.push(ArrayToArray::Transpose { order });
            }
            let (chunk_shape, codecs) = if sharded {
                let mut s = ShardingCodec::new(inner, chain);
                if big {
                    s.index_location = crate::codec::IndexLocation::Start;
                }
                (
                    outer,
                    CodecChain {
                        array_to_array: vec![],
                        array_to_bytes: ArrayToBytes::Sharding(Box::new(s)),
                        bytes_to_bytes: vec![],
                    },
                )
            } else {
                (inner, chain)
            };
            let separator = if cke % 2 == 0 { Separator::Slash } else { Separator::Dot };
            let mut attributes = Map::new();
            attributes.insert("k".into(), json!([1, "two", null]));
            ArrayMetadata {
                zarr_format: ZarrFormat::V3,
                shape,
                data_type: dt,
                chunk_shape,
                chunk_key_encoding: if cke < 2 {
                    ChunkKeyEncoding::Default { separator }
                } else {
                    ChunkKeyEncoding::V2 { separator }
                },
                fill_value: fill,
                codecs,
                dimension_names: names,
                attributes,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn parse_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = ArrayMetadata::parse(&bytes);
    }

    #[test]
    fn to_json_round_trips(m in arb_metadata()) {
        let text = m.to_json();
        prop_assert_eq!(ArrayMetadata::parse(text.as_bytes()), Ok(m));
    }

    /// Mutating any byte of a valid document (or truncating it) never panics.
    #[test]
    fn parse_never_panics_on_mutated_documents(m in arb_metadata(), pos in any::<prop::sample::Index>(),
                                               byte in any::<u8>(), cut in any::<bool>()) {
        let _ = ArrayMetadata::parse(&mutated(&m.to_json(), pos, byte, cut));
    }

    /// Replacing any value in a valid document by another JSON value never panics.
    #[test]
    fn parse_never_panics_on_replaced_values(m in arb_metadata(), pick in any::<prop::sample::Index>(),
                                             repl in arb_replacement("[a-z0-9_.x]{0,10}", json!(["bytes"]))) {
        let _ = ArrayMetadata::parse(&with_value_replaced(&m.to_json(), pick, repl));
    }
}

/// A JSON value to put in place of another: null, numbers of every kind, short strings
/// drawn from `strings`, small containers, and `special` (a value the format reads).
pub(super) fn arb_replacement(
    strings: &'static str,
    special: Value,
) -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        strings.prop_map(Value::from),
        Just(json!([])),
        Just(json!({})),
        Just(json!([0, 0])),
        Just(special),
        Just(json!([u64::MAX, 1])),
    ]
}

/// `text` with the byte at `pos` set to `byte`, or cut there.
pub(super) fn mutated(text: &str, pos: prop::sample::Index, byte: u8, cut: bool) -> Vec<u8> {
    let mut text = text.as_bytes().to_vec();
    let i = pos.index(text.len());
    if cut {
        text.truncate(i);
    } else {
        text[i] = byte;
    }
    text
}

/// The JSON document `text` with the value (or container) at `pick` of all its paths
/// replaced by `repl`.
pub(super) fn with_value_replaced(text: &str, pick: prop::sample::Index, repl: Value) -> Vec<u8> {
    let mut doc: Value = serde_json::from_str(text).unwrap();
    let mut paths = Vec::new();
    collect_paths(&doc, String::new(), &mut paths);
    let p = &paths[pick.index(paths.len())];
    if let Some(slot) = doc.pointer_mut(p) {
        *slot = repl;
    }
    serde_json::to_vec(&doc).unwrap()
}

fn collect_paths(v: &Value, here: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                collect_paths(x, format!("{here}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                collect_paths(x, format!("{here}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(here);
}
