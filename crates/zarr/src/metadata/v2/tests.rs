//! Tests of `.zarray` parsing: every field and spelling zarr-python and numcodecs write,
//! each refusal, and the round trip through `to_zarray`.
use proptest::prelude::*;

use super::*;
use crate::codec::BloscCname;
use crate::metadata::tests::{arb_fill, arb_replacement, mutated, with_value_replaced};

/// The `.zarray` and `.zattrs` zarr-python 3.1.6 wrote for
/// `create_array(shape=(100, 60), chunks=(50, 30), dtype="<u2", zarr_format=2,
/// fill_value=7, compressors=Blosc(cname="zstd", clevel=5, shuffle=BITSHUFFLE),
/// attributes={"resolution": [4, 4]}, chunk_key_encoding={"name": "v2", "separator": "/"})`.
const ZARR_PYTHON_ZARRAY: &str = r#"{
  "shape": [100, 60],
  "chunks": [50, 30],
  "dtype": "<u2",
  "fill_value": 7,
  "order": "C",
  "filters": null,
  "dimension_separator": "/",
  "compressor": {"id": "blosc", "cname": "zstd", "clevel": 5, "shuffle": 2, "blocksize": 0},
  "zarr_format": 2
}"#;
const ZARR_PYTHON_ZATTRS: &str = r#"{"resolution": [4, 4]}"#;

/// A minimal valid `.zarray` (uint16, C order, no compressor) with `key` set to `value`.
fn doc_with(key: &str, value: Value) -> Vec<u8> {
    let mut v = json!({
        "zarr_format": 2, "shape": [10, 6], "chunks": [4, 4], "dtype": "<u2",
        "compressor": null, "fill_value": 0, "order": "C", "filters": null
    });
    v.as_object_mut().unwrap().insert(key.into(), value);
    serde_json::to_vec(&v).unwrap()
}

fn doc_without(key: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&doc_with("x", Value::Null)).unwrap();
    v.as_object_mut().unwrap().remove(key);
    serde_json::to_vec(&v).unwrap()
}

fn parse(doc: &[u8]) -> Result<ArrayMetadata> {
    ArrayMetadata::parse_v2(doc, None)
}

fn with_compressor(c: Value) -> Result<Option<BytesToBytes>> {
    parse(&doc_with("compressor", c)).map(|m| m.codecs.bytes_to_bytes.first().cloned())
}

fn fill(dtype: &str, fill: Value) -> Result<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(&doc_with("dtype", dtype.into())).unwrap();
    v["fill_value"] = fill;
    parse(&serde_json::to_vec(&v).unwrap()).map(|m| m.fill_value.as_ne_bytes().to_vec())
}

#[test]
fn parses_what_zarr_python_writes() {
    let m =
        ArrayMetadata::parse_v2(ZARR_PYTHON_ZARRAY.as_bytes(), Some(ZARR_PYTHON_ZATTRS.as_bytes()))
            .unwrap();
    assert_eq!(m.zarr_format, ZarrFormat::V2);
    assert_eq!(m.shape, vec![100, 60]);
    assert_eq!(m.chunk_shape, vec![50, 30]);
    assert_eq!(m.data_type, DataType::UInt16);
    assert_eq!(m.fill_value.as_ne_bytes(), 7u16.to_ne_bytes());
    assert_eq!(m.chunk_key_encoding, ChunkKeyEncoding::V2 { separator: Separator::Slash });
    assert_eq!(m.chunk_key_encoding.chunk_key(&[1, 0]), "1/0");
    assert_eq!(
        m.codecs,
        CodecChain {
            array_to_array: vec![],
            array_to_bytes: ArrayToBytes::Bytes { endian: Some(Endian::Little) },
            bytes_to_bytes: vec![BytesToBytes::Blosc {
                cname: BloscCname::Zstd,
                clevel: 5,
                shuffle: BloscShuffle::BitShuffle,
                typesize: None,
                blocksize: 0,
            }],
        }
    );
    assert_eq!(m.attributes["resolution"], json!([4, 4]));
    assert_eq!(m.dimension_names, None);
    assert_eq!(m.validate(), Ok(()));
    // The same document as v3 metadata is refused for its format, naming both versions.
    assert_eq!(
        ArrayMetadata::parse(ZARR_PYTHON_ZARRAY.as_bytes()),
        Err(Error::UnsupportedFormat { zarr_format: 2, expected: 3 })
    );
}

#[test]
fn every_dtype_family_in_both_byte_orders() {
    for (code, dt) in TYPE_CODES {
        for (order, endian) in [('<', Endian::Little), ('>', Endian::Big), ('|', Endian::Little)] {
            let name = format!("{order}{code}");
            let got = parse(&doc_with("dtype", name.clone().into()));
            if dt.size() == 1 {
                let m = got.unwrap();
                assert_eq!(
                    (m.data_type, m.codecs.array_to_bytes),
                    (dt, ArrayToBytes::Bytes { endian: None }),
                    "{name}"
                );
            } else if order == '|' {
                assert!(
                    matches!(got, Err(Error::InvalidField { field: "dtype", .. })),
                    "{name}: {got:?}"
                );
            } else {
                let m = got.unwrap();
                assert_eq!(m.data_type, dt, "{name}");
                assert_eq!(m.codecs.array_to_bytes, ArrayToBytes::Bytes { endian: Some(endian) });
            }
        }
    }
}

#[test]
fn other_dtypes_are_refused_by_name() {
    for name in [
        "<c8", "<c16", "<M8[ns]", "<m8[s]", "|S10", "<U5", "|O", "|V4", "<f16", "bfloat16", "u2",
        "",
    ] {
        assert_eq!(
            parse(&doc_with("dtype", name.into())),
            Err(Error::UnsupportedDataType { name: name.into() }),
            "{name}"
        );
    }
    let structured = json!([["r", "<u1"], ["g", "<u1"]]);
    assert_eq!(
        parse(&doc_with("dtype", structured.clone())),
        Err(Error::UnsupportedDataType { name: structured.to_string() })
    );
}

#[test]
fn fortran_order_is_a_reversing_transpose() {
    let m = parse(&doc_with("order", "F".into())).unwrap();
    assert_eq!(m.codecs.array_to_array, vec![ArrayToArray::Transpose { order: vec![1, 0] }]);
    let mut v: Value = serde_json::from_slice(&doc_with("order", "F".into())).unwrap();
    v["shape"] = json!([5, 6, 7]);
    v["chunks"] = json!([2, 3, 4]);
    let m = parse(&serde_json::to_vec(&v).unwrap()).unwrap();
    assert_eq!(m.codecs.array_to_array, vec![ArrayToArray::Transpose { order: vec![2, 1, 0] }]);
    // What reaches the `bytes` codec is the chunk with its axes reversed: C order of that
    // is Fortran order of the chunk.
    assert_eq!(m.codecs.inner_shape(&[2, 3, 4]), vec![4, 3, 2]);
    // At rank 1 the two orders are the same layout, so nothing needs undoing.
    v["shape"] = json!([9]);
    v["chunks"] = json!([4]);
    let m = parse(&serde_json::to_vec(&v).unwrap()).unwrap();
    assert!(m.codecs.array_to_array.is_empty());
    assert!(matches!(
        parse(&doc_with("order", "K".into())),
        Err(Error::InvalidField { field: "order", .. })
    ));
}

#[test]
fn fill_values_in_every_v2_spelling() {
    // null: no fill value; zarr-python 3.1 reads missing chunks as zeros.
    for (code, dt) in TYPE_CODES {
        let order = if dt.size() == 1 { '|' } else { '<' };
        assert_eq!(fill(&format!("{order}{code}"), Value::Null).unwrap(), vec![0; dt.size()]);
    }
    assert_eq!(fill("<f4", "NaN".into()).unwrap(), 0x7fc0_0000u32.to_ne_bytes());
    assert_eq!(fill(">f8", "Infinity".into()).unwrap(), f64::INFINITY.to_ne_bytes());
    assert_eq!(fill("<f2", "-Infinity".into()).unwrap(), 0xfc00u16.to_ne_bytes());
    assert_eq!(fill("<f4", json!(-1.5)).unwrap(), (-1.5f32).to_ne_bytes());
    assert_eq!(fill("<f8", json!(3)).unwrap(), 3.0f64.to_ne_bytes());
    assert_eq!(fill("<i2", json!(-7)).unwrap(), (-7i16).to_ne_bytes());
    assert_eq!(fill("<i2", json!(1.0)).unwrap(), 1i16.to_ne_bytes());
    assert_eq!(
        fill("<u8", json!(9_223_372_036_854_788_153u64)).unwrap(),
        9_223_372_036_854_788_153u64.to_ne_bytes()
    );
    assert_eq!(fill("|b1", json!(true)).unwrap(), vec![1]);
    assert_eq!(fill("|b1", json!(1)).unwrap(), vec![1]);
    assert_eq!(fill("|b1", json!(0)).unwrap(), vec![0]);
    for (dtype, bad) in [
        ("<i2", json!(1.5)),
        ("<i2", json!("NaN")),
        ("<i2", json!(70000)),
        ("<u2", json!(-1)),
        ("<u2", json!(-1.0)),
        ("<i8", json!(1e300)),
        ("|b1", json!(2)),
        ("<f4", json!("0x7fc00000")),
        ("<f4", json!("nan")),
        ("<f4", json!([1])),
    ] {
        assert!(
            matches!(fill(dtype, bad.clone()), Err(Error::FillValue { .. })),
            "{dtype} {bad}: {:?}",
            fill(dtype, bad.clone())
        );
    }
}

#[test]
fn dimension_separator_picks_the_chunk_keys() {
    let dot = parse(&doc_without("dimension_separator")).unwrap();
    assert_eq!(dot.chunk_key_encoding.chunk_key(&[2, 1]), "2.1");
    let dot = parse(&doc_with("dimension_separator", ".".into())).unwrap();
    assert_eq!(dot.chunk_key_encoding, ChunkKeyEncoding::V2 { separator: Separator::Dot });
    let slash = parse(&doc_with("dimension_separator", "/".into())).unwrap();
    assert_eq!(slash.chunk_key_encoding.chunk_key(&[2, 1]), "2/1");
    assert!(matches!(
        parse(&doc_with("dimension_separator", "_".into())),
        Err(Error::InvalidField { field: "dimension_separator", .. })
    ));
}

#[test]
fn every_numcodecs_compressor_configuration() {
    // The `get_config()` of numcodecs 0.16's codecs, defaults and otherwise.
    assert_eq!(
        with_compressor(json!({"id": "zstd", "level": 0, "checksum": false})),
        Ok(Some(BytesToBytes::Zstd { level: 0, checksum: false }))
    );
    assert_eq!(
        with_compressor(json!({"id": "zstd", "level": 3, "checksum": true})),
        Ok(Some(BytesToBytes::Zstd { level: 3, checksum: true }))
    );
    // zarr-python 3.1 writes zstd without the checksum key.
    assert_eq!(
        with_compressor(json!({"id": "zstd", "level": -5})),
        Ok(Some(BytesToBytes::Zstd { level: -5, checksum: false }))
    );
    assert_eq!(
        with_compressor(json!({"id": "gzip", "level": 1})),
        Ok(Some(BytesToBytes::Gzip { level: 1 }))
    );
    assert_eq!(
        with_compressor(json!({"id": "zlib", "level": 9})),
        Ok(Some(BytesToBytes::Zlib { level: 9 }))
    );
    assert_eq!(
        with_compressor(json!({"id": "lz4", "acceleration": 1})),
        Ok(Some(BytesToBytes::Lz4 { acceleration: 1 }))
    );
    assert_eq!(
        with_compressor(json!({"id": "lz4"})),
        Ok(Some(BytesToBytes::Lz4 { acceleration: 1 }))
    );
    assert_eq!(with_compressor(Value::Null), Ok(None));
    assert_eq!(parse(&doc_without("compressor")).unwrap().codecs.bytes_to_bytes, vec![]);
    for cname in BloscCname::ALL {
        for (shuffle, want) in [
            (0, BloscShuffle::NoShuffle),
            (1, BloscShuffle::Shuffle),
            (2, BloscShuffle::BitShuffle),
            // AUTOSHUFFLE on a two-byte type: byte shuffle.
            (-1, BloscShuffle::Shuffle),
        ] {
            let c = json!({"id": "blosc", "cname": cname.name(), "clevel": 5, "shuffle": shuffle, "blocksize": 256});
            assert_eq!(
                with_compressor(c),
                Ok(Some(BytesToBytes::Blosc {
                    cname,
                    clevel: 5,
                    shuffle: want,
                    typesize: None,
                    blocksize: 256
                })),
                "{cname:?} {shuffle}"
            );
        }
    }
    // AUTOSHUFFLE on a one-byte type: bit shuffle.
    let mut v: Value = serde_json::from_slice(&doc_with("dtype", "|u1".into())).unwrap();
    v["compressor"] =
        json!({"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": -1, "blocksize": 0});
    let m = parse(&serde_json::to_vec(&v).unwrap()).unwrap();
    assert!(matches!(
        m.codecs.bytes_to_bytes[..],
        [BytesToBytes::Blosc { shuffle: BloscShuffle::BitShuffle, .. }]
    ));
    // numcodecs' defaults, and an explicit typesize.
    assert_eq!(
        with_compressor(json!({"id": "blosc", "typesize": 4})),
        Ok(Some(BytesToBytes::Blosc {
            cname: BloscCname::Lz4,
            clevel: 5,
            shuffle: BloscShuffle::Shuffle,
            typesize: Some(4),
            blocksize: 0
        }))
    );
}

#[test]
fn unknown_compressors_bad_configurations_and_filters_are_refused_by_name() {
    for id in ["bz2", "lzma", "blosc2", "zfpy", "pcodec", "LZ4"] {
        assert_eq!(
            with_compressor(json!({"id": id})),
            Err(Error::Unsupported { codec: id.into() }),
            "{id}"
        );
    }
    for (c, codec, field) in [
        (json!({"id": "blosc", "shuffle": 3}), "blosc", "shuffle"),
        (json!({"id": "blosc", "cname": "brotli"}), "blosc", "cname"),
        (json!({"id": "blosc", "clevel": 10}), "blosc", "clevel"),
        (json!({"id": "blosc", "blocksize": -1}), "blosc", "blocksize"),
        (json!({"id": "zstd", "level": 23}), "zstd", "level"),
        (json!({"id": "zstd", "checksum": 1}), "zstd", "checksum"),
        (json!({"id": "gzip"}), "gzip", "level"),
        (json!({"id": "zlib", "level": "6"}), "zlib", "level"),
        (json!({"id": "lz4", "acceleration": 1.5}), "lz4", "acceleration"),
        (json!({"id": "lz4", "store_size": true}), "lz4", "configuration"),
    ] {
        assert!(
            matches!(with_compressor(c.clone()), Err(Error::CodecConfig { codec: got, field: f, .. }) if got == codec && f == field),
            "{c}: {:?}",
            with_compressor(c.clone())
        );
    }
    for c in [json!({"cname": "lz4"}), json!({"id": 3}), json!("zstd"), json!([])] {
        assert!(
            matches!(
                with_compressor(c.clone()),
                Err(Error::InvalidField { field: "compressor", .. })
            ),
            "{c}"
        );
    }
    // filters: absent, null and [] are no filters; any filter is refused by its id.
    assert!(parse(&doc_without("filters")).is_ok());
    assert!(parse(&doc_with("filters", json!([]))).is_ok());
    assert_eq!(
        parse(&doc_with("filters", json!([{"id": "delta", "dtype": "<u2"}]))),
        Err(Error::UnsupportedFilter { id: "delta".into() })
    );
    assert_eq!(
        parse(&doc_with("filters", json!([{"id": "shuffle", "elementsize": 2}, {"id": "delta"}]))),
        Err(Error::UnsupportedFilter { id: "shuffle".into() })
    );
    for f in [json!([{}]), json!(["delta"]), json!({"id": "delta"})] {
        assert!(
            matches!(
                parse(&doc_with("filters", f.clone())),
                Err(Error::InvalidField { field: "filters", .. })
            ),
            "{f}"
        );
    }
}

#[test]
fn required_fields_format_and_grid_are_checked() {
    for field in ["zarr_format", "shape", "chunks", "dtype", "fill_value", "order"] {
        assert_eq!(parse(&doc_without(field)), Err(Error::MissingField { field }), "{field}");
    }
    assert_eq!(
        parse(&doc_with("zarr_format", 3.into())),
        Err(Error::UnsupportedFormat { zarr_format: 3, expected: 2 })
    );
    assert!(matches!(
        parse(&doc_with("zarr_format", "2".into())),
        Err(Error::InvalidField { field: "zarr_format", .. })
    ));
    assert_eq!(parse(&doc_with("shape", json!([]))), Err(Error::Rank { rank: 0 }));
    assert!(matches!(
        parse(&doc_with("chunks", json!([4]))),
        Err(Error::InvalidField { field: "chunks", .. })
    ));
    assert!(matches!(
        parse(&doc_with("chunks", json!([4, 0]))),
        Err(Error::InvalidField { field: "chunks", .. })
    ));
    assert!(matches!(parse(b"[1, 2]"), Err(Error::InvalidField { field: "(root)", .. })));
    assert!(matches!(parse(b"{\"zarr_format\": 2,"), Err(Error::Json { .. })));
    // Keys the spec does not define are ignored, as zarr-python ignores them.
    assert!(parse(&doc_with("something_new", json!({"a": 1}))).is_ok());
}

#[test]
fn zattrs_must_be_an_object() {
    let doc = doc_with("x", Value::Null);
    assert_eq!(ArrayMetadata::parse_v2(&doc, Some(b"{}")).unwrap().attributes, Map::new());
    for bad in [&b"[1]"[..], b"{\"a\":", b"null"] {
        assert!(
            matches!(
                ArrayMetadata::parse_v2(&doc, Some(bad)),
                Err(Error::InvalidField { field: ".zattrs", .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn models_without_a_v2_spelling_are_refused() {
    let base = parse(&doc_with("x", Value::Null)).unwrap();
    let not_v2 = |m: ArrayMetadata| match m.to_zarray() {
        Err(Error::NotV2 { .. }) => {}
        other => panic!("expected NotV2, got {other:?}"),
    };
    let mut m = base.clone();
    m.codecs.bytes_to_bytes = vec![BytesToBytes::Crc32c];
    not_v2(m);
    let mut m = base.clone();
    m.codecs.bytes_to_bytes =
        vec![BytesToBytes::Gzip { level: 1 }, BytesToBytes::Zlib { level: 1 }];
    not_v2(m);
    let mut m = base.clone();
    m.codecs.array_to_array = vec![ArrayToArray::Transpose { order: vec![0, 1] }];
    not_v2(m);
    let mut m = base.clone();
    m.dimension_names = Some(vec![None, None]);
    not_v2(m);
    let mut m = base.clone();
    m.chunk_key_encoding = ChunkKeyEncoding::Default { separator: Separator::Slash };
    not_v2(m);
    let mut m = base.clone();
    m.data_type = DataType::BFloat16;
    not_v2(m);
    let mut m = base.clone();
    m.data_type = DataType::Float32;
    m.fill_value =
        FillValue::from_ne_bytes(DataType::Float32, &0x7fc0_0001u32.to_ne_bytes()).unwrap();
    not_v2(m);
    let sharded = ArrayMetadata::sharded(
        vec![8],
        vec![8],
        vec![4],
        DataType::UInt8,
        CodecChain::bytes(None),
        FillValue::zero(DataType::UInt8),
    )
    .unwrap();
    assert!(matches!(sharded.into_v2(), Err(Error::NotV2 { .. })));
}

#[test]
fn a_v3_model_becomes_v2_with_v2_keys() {
    let codecs = CodecChain::little_endian(vec![BytesToBytes::Zstd { level: 3, checksum: false }]);
    let m = ArrayMetadata::chunked(
        vec![20, 30],
        vec![8, 8],
        DataType::Int32,
        codecs,
        FillValue::zero(DataType::Int32),
    )
    .unwrap()
    .into_v2()
    .unwrap();
    assert_eq!(m.zarr_format, ZarrFormat::V2);
    assert_eq!(m.chunk_key_encoding.chunk_key(&[1, 2]), "1.2");
    let docs = m.documents().unwrap();
    assert_eq!(docs.len(), 1, "no attributes, no .zattrs");
    assert_eq!(docs[0].0, ".zarray");
    let doc: Value = serde_json::from_str(&docs[0].1).unwrap();
    assert_eq!(doc["dtype"], "<i4");
    assert_eq!(doc["compressor"], json!({"id": "zstd", "level": 3, "checksum": false}));
    assert_eq!(doc["dimension_separator"], ".");
    assert_eq!(ArrayMetadata::parse_v2(docs[0].1.as_bytes(), None), Ok(m));
}

/// A random model that zarr v2 can express.
fn arb_v2() -> impl Strategy<Value = ArrayMetadata> {
    (
        0usize..12,
        prop::collection::vec((1u64..60, 1u64..20), 1..6),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_flat_map(|(d, dims, fortran, big, slash)| {
            let dt = TYPE_CODES[d].1;
            let compressor = prop_oneof![
                Just(None),
                (-5i32..=22, any::<bool>())
                    .prop_map(|(level, checksum)| Some(BytesToBytes::Zstd { level, checksum })),
                (0u32..=9).prop_map(|level| Some(BytesToBytes::Gzip { level })),
                (0u32..=9).prop_map(|level| Some(BytesToBytes::Zlib { level })),
                any::<i32>().prop_map(|acceleration| Some(BytesToBytes::Lz4 { acceleration })),
                (0usize..6, 0u8..=9, 0usize..3, prop::option::of(1u32..16), 0u64..100_000)
                    .prop_map(|(c, clevel, s, typesize, blocksize)| Some(BytesToBytes::Blosc {
                        cname: BloscCname::ALL[c],
                        clevel,
                        shuffle: BloscShuffle::ALL[s],
                        typesize,
                        blocksize,
                    })),
            ];
            (Just((dt, dims, fortran, big, slash)), arb_fill(dt), compressor, any::<bool>())
        })
        .prop_filter_map(
            "v2 has no NaN payloads",
            |((dt, dims, fortran, big, slash), fill, compressor, attrs)| {
                let rank = dims.len();
                let endian =
                    (dt.size() > 1).then_some(if big { Endian::Big } else { Endian::Little });
                let mut attributes = Map::new();
                if attrs {
                    attributes
                        .insert("multiscales".into(), json!([{"version": "0.4", "axes": ["z"]}]));
                }
                let m = ArrayMetadata {
                    zarr_format: ZarrFormat::V2,
                    shape: dims.iter().map(|x| x.0).collect(),
                    data_type: dt,
                    chunk_shape: dims.iter().map(|x| x.1).collect(),
                    chunk_key_encoding: ChunkKeyEncoding::V2 {
                        separator: if slash { Separator::Slash } else { Separator::Dot },
                    },
                    fill_value: fill,
                    codecs: CodecChain {
                        array_to_array: if fortran && rank > 1 {
                            vec![ArrayToArray::Transpose { order: (0..rank).rev().collect() }]
                        } else {
                            vec![]
                        },
                        array_to_bytes: ArrayToBytes::Bytes { endian },
                        bytes_to_bytes: compressor.into_iter().collect(),
                    },
                    dimension_names: None,
                    attributes,
                };
                m.to_zarray().is_ok().then_some(m)
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn to_zarray_round_trips(m in arb_v2()) {
        let zattrs = m.to_zattrs();
        let back = ArrayMetadata::parse_v2(m.to_zarray().unwrap().as_bytes(), zattrs.as_deref().map(str::as_bytes));
        prop_assert_eq!(back, Ok(m.clone()));
        prop_assert_eq!(m.validate(), Ok(()));
    }

    #[test]
    fn parse_v2_never_panics_on_bytes(a in prop::collection::vec(any::<u8>(), 0..300),
                                      b in prop::option::of(prop::collection::vec(any::<u8>(), 0..40))) {
        let _ = ArrayMetadata::parse_v2(&a, b.as_deref());
    }

    /// Mutating any byte of a valid document (or truncating it) never panics.
    #[test]
    fn parse_v2_never_panics_on_mutated_documents(m in arb_v2(), pos in any::<prop::sample::Index>(),
                                                  byte in any::<u8>(), cut in any::<bool>()) {
        let _ = ArrayMetadata::parse_v2(&mutated(&m.to_zarray().unwrap(), pos, byte, cut), None);
    }

    /// Replacing any value in a valid document by another JSON value never panics.
    #[test]
    fn parse_v2_never_panics_on_replaced_values(m in arb_v2(), pick in any::<prop::sample::Index>(),
                                                repl in arb_replacement("[<>|a-z0-9_.x]{0,6}", json!([{"id": "delta"}]))) {
        let _ = ArrayMetadata::parse_v2(&with_value_replaced(&m.to_zarray().unwrap(), pick, repl), None);
    }
}
