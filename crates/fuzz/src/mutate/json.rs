//! Structural edits of JSON documents (RFC 8259): numbers replaced by huge, negative or
//! fractional values, object members and array elements dropped or duplicated, keys
//! renamed, values swapped for other values (from the document, the splice partner, or
//! a list of zarr names and JSON shapes).
//!
//! A small scanner finds the spans of values, members and elements. It accepts only
//! well-formed documents; for anything else the caller falls back to byte edits.

use std::ops::Range;

use crate::rng::SplitMix64;

/// Nesting deeper than this is left to the byte edits (serde_json stops at 128).
const MAX_DEPTH: usize = 64;

/// Numeric literals at the edges of what a reader may map to `u64`, `i64`, `f64`, `u32`
/// or a `usize` product.
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "3",
    "7",
    "8",
    "255",
    "256",
    "65536",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "9007199254740993",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "-9223372036854775809",
    "1e308",
    "1e309",
    "-1e309",
    "1e-400",
    "0.5",
    "1.0",
    "-0",
    "-0.0",
    "1E2",
];

/// Strings a `zarr.json` gives meaning to: node types, grids, key encodings, codec names
/// and settings, data types and special fill values.
const STRINGS: &[&str] = &[
    "\"array\"",
    "\"group\"",
    "\"regular\"",
    "\"default\"",
    "\"v2\"",
    "\"/\"",
    "\".\"",
    "\"bytes\"",
    "\"transpose\"",
    "\"sharding_indexed\"",
    "\"zstd\"",
    "\"gzip\"",
    "\"blosc\"",
    "\"crc32c\"",
    "\"little\"",
    "\"big\"",
    "\"start\"",
    "\"end\"",
    "\"lz4\"",
    "\"lz4hc\"",
    "\"blosclz\"",
    "\"zlib\"",
    "\"snappy\"",
    "\"noshuffle\"",
    "\"shuffle\"",
    "\"bitshuffle\"",
    "\"bool\"",
    "\"int8\"",
    "\"uint16\"",
    "\"int32\"",
    "\"uint64\"",
    "\"float16\"",
    "\"float32\"",
    "\"float64\"",
    "\"complex64\"",
    "\"NaN\"",
    "\"Infinity\"",
    "\"-Infinity\"",
    "\"0x7fc00000\"",
    "\"0xffffffffffffffffff\"",
    "\"\"",
    // zarr v2 (.zarray) spellings: numpy dtypes, orders, compressor and filter ids.
    "\"<u2\"",
    "\">f8\"",
    "\"|b1\"",
    "\"|u2\"",
    "\"<c8\"",
    "\"C\"",
    "\"F\"",
    "\"delta\"",
    "\"bz2\"",
    "\"numcodecs.zlib\"",
    "\"numcodecs.lz4\"",
];

/// Keys a `zarr.json` gives meaning to.
const KEYS: &[&str] = &[
    "\"zarr_format\"",
    "\"node_type\"",
    "\"shape\"",
    "\"data_type\"",
    "\"chunk_grid\"",
    "\"chunk_key_encoding\"",
    "\"fill_value\"",
    "\"codecs\"",
    "\"attributes\"",
    "\"storage_transformers\"",
    "\"dimension_names\"",
    "\"name\"",
    "\"configuration\"",
    "\"chunk_shape\"",
    "\"separator\"",
    "\"endian\"",
    "\"order\"",
    "\"level\"",
    "\"checksum\"",
    "\"cname\"",
    "\"clevel\"",
    "\"shuffle\"",
    "\"typesize\"",
    "\"blocksize\"",
    "\"index_codecs\"",
    "\"index_location\"",
    "\"must_understand\"",
    "\"unknown\"",
    // zarr v2 (.zarray) keys.
    "\"chunks\"",
    "\"dtype\"",
    "\"compressor\"",
    "\"filters\"",
    "\"dimension_separator\"",
    "\"id\"",
    "\"acceleration\"",
];

/// Other JSON shapes a value may be replaced with.
const SHAPES: &[&str] = &[
    "null",
    "true",
    "false",
    "[]",
    "{}",
    "[0]",
    "[1, 1]",
    "[[]]",
    "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33]",
    "{\"name\": \"bytes\"}",
    "{\"name\": \"bytes\", \"configuration\": {}}",
    "{\"name\": \"crc32c\", \"must_understand\": false}",
    "{\"must_understand\": false}",
];

/// The spans of one well-formed document.
#[derive(Debug, Default)]
struct Spans {
    /// Every value, nested ones included.
    values: Vec<Range<usize>>,
    /// Number literals.
    numbers: Vec<Range<usize>>,
    /// String values (not keys), quotes included.
    strings: Vec<Range<usize>>,
    /// Object keys, quotes included.
    keys: Vec<Range<usize>>,
    /// Object members (`"key": value`) and array elements: what can be dropped or
    /// duplicated along with a separating comma.
    items: Vec<Range<usize>>,
}

struct Scanner<'a> {
    doc: &'a [u8],
    at: usize,
    spans: Spans,
}

impl Scanner<'_> {
    fn skip_ws(&mut self) {
        while self.doc.get(self.at).is_some_and(|b| b" \t\r\n".contains(b)) {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        self.skip_ws();
        (self.doc.get(self.at) == Some(&byte)).then(|| self.at += 1)
    }

    fn string(&mut self) -> Option<Range<usize>> {
        let start = self.at;
        self.at += 1;
        loop {
            match *self.doc.get(self.at)? {
                b'"' => {
                    self.at += 1;
                    return Some(start..self.at);
                }
                b'\\' => self.at += 2,
                _ => self.at += 1,
            }
        }
    }

    fn value(&mut self, depth: usize) -> Option<Range<usize>> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.skip_ws();
        let start = self.at;
        match *self.doc.get(self.at)? {
            b'{' => {
                self.at += 1;
                if self.eat(b'}').is_none() {
                    loop {
                        self.skip_ws();
                        if self.doc.get(self.at) != Some(&b'"') {
                            return None;
                        }
                        let key = self.string()?;
                        self.eat(b':')?;
                        let value = self.value(depth + 1)?;
                        self.spans.keys.push(key.clone());
                        self.spans.items.push(key.start..value.end);
                        if self.eat(b',').is_none() {
                            self.eat(b'}')?;
                            break;
                        }
                    }
                }
            }
            b'[' => {
                self.at += 1;
                if self.eat(b']').is_none() {
                    loop {
                        let element = self.value(depth + 1)?;
                        self.spans.items.push(element);
                        if self.eat(b',').is_none() {
                            self.eat(b']')?;
                            break;
                        }
                    }
                }
            }
            b'"' => {
                let s = self.string()?;
                self.spans.strings.push(s);
            }
            b'-' | b'0'..=b'9' => {
                while self.doc.get(self.at).is_some_and(|b| b"+-.eE0123456789".contains(b)) {
                    self.at += 1;
                }
                self.spans.numbers.push(start..self.at);
            }
            b't' | b'f' | b'n' => {
                while self.doc.get(self.at).is_some_and(u8::is_ascii_lowercase) {
                    self.at += 1;
                }
            }
            _ => return None,
        }
        let span = start..self.at;
        self.spans.values.push(span.clone());
        Some(span)
    }
}

/// The spans of `doc`, or `None` unless it is one well-formed JSON value.
fn scan(doc: &[u8]) -> Option<Spans> {
    let mut s = Scanner { doc, at: 0, spans: Spans::default() };
    s.value(0)?;
    s.skip_ws();
    (s.at == doc.len()).then_some(s.spans)
}

/// The range to remove to drop `item` together with one separating comma.
fn with_comma(doc: &[u8], item: &Range<usize>) -> Range<usize> {
    let after = doc[item.end..].iter().position(|b| !b" \t\r\n".contains(b));
    if let Some(k) = after
        && doc[item.end + k] == b','
    {
        return item.start..item.end + k + 1;
    }
    let before = doc[..item.start].iter().rposition(|b| !b" \t\r\n".contains(b));
    match before {
        Some(k) if doc[k] == b',' => k..item.end,
        _ => item.clone(),
    }
}

/// Applies one structural edit to `doc`. Returns false (leaving `doc` unchanged) when
/// `doc` is not well-formed JSON or has nothing of the kind chosen.
pub(super) fn mutate(rng: &mut SplitMix64, doc: &mut Vec<u8>, other: &[u8]) -> bool {
    let Some(spans) = scan(doc) else { return false };
    let (range, replacement): (Range<usize>, Vec<u8>) = match rng.below(8) {
        0 | 1 => {
            let Some(n) = pick(rng, &spans.numbers) else { return false };
            let text = if rng.chance(70) {
                rng.pick(NUMBERS).as_bytes().to_vec()
            } else {
                nearby_number(rng, &doc[n.clone()])
            };
            (n, text)
        }
        2 => {
            let Some(item) = pick(rng, &spans.items) else { return false };
            (with_comma(doc, &item), Vec::new())
        }
        3 => {
            let Some(item) = pick(rng, &spans.items) else { return false };
            let mut copy = doc[item.clone()].to_vec();
            copy.insert(0, b',');
            (item.end..item.end, copy)
        }
        4 => {
            let Some(k) = pick(rng, &spans.keys) else { return false };
            (k, rng.pick(KEYS).as_bytes().to_vec())
        }
        5 => {
            let Some(s) = pick(rng, &spans.strings) else { return false };
            (s, rng.pick(STRINGS).as_bytes().to_vec())
        }
        6 => {
            let Some(v) = pick(rng, &spans.values) else { return false };
            (v, rng.pick(SHAPES).as_bytes().to_vec())
        }
        _ => {
            // A value from this document or the splice partner: a codec list where a
            // shape was, another codec's configuration, and so on.
            let Some(v) = pick(rng, &spans.values) else { return false };
            let donor = match scan(other) {
                Some(o) if rng.chance(50) => pick(rng, &o.values).map(|r| other[r].to_vec()),
                _ => pick(rng, &spans.values).map(|r| doc[r].to_vec()),
            };
            let Some(donor) = donor else { return false };
            (v, donor)
        }
    };
    doc.splice(range, replacement);
    true
}

fn pick(rng: &mut SplitMix64, spans: &[Range<usize>]) -> Option<Range<usize>> {
    (!spans.is_empty()).then(|| rng.pick(spans).clone())
}

/// A number derived from `literal`: one more or less, doubled, negated, as a float, or
/// times a large power of two (shape products that overflow).
fn nearby_number(rng: &mut SplitMix64, literal: &[u8]) -> Vec<u8> {
    let Some(n) = std::str::from_utf8(literal).ok().and_then(|s| s.parse::<i128>().ok()) else {
        return rng.pick(NUMBERS).as_bytes().to_vec();
    };
    let m = match rng.below(6) {
        0 => n.saturating_add(1),
        1 => n.saturating_sub(1),
        2 => n.saturating_mul(2),
        3 => n.saturating_neg(),
        4 => return format!("{n}.0").into_bytes(),
        _ => n.saturating_mul(1 << (32 + rng.below(32))),
    };
    m.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str =
        r#"{"shape": [10, 20], "codecs": [{"name": "bytes"}], "fill_value": "NaN", "x": null}"#;

    #[test]
    fn scanner_finds_every_kind_of_span() {
        let d = DOC.as_bytes();
        let s = scan(d).unwrap();
        let text = |r: &Range<usize>| std::str::from_utf8(&d[r.clone()]).unwrap();
        assert_eq!(s.numbers.iter().map(text).collect::<Vec<_>>(), ["10", "20"]);
        assert_eq!(s.strings.iter().map(text).collect::<Vec<_>>(), ["\"bytes\"", "\"NaN\""]);
        assert_eq!(
            s.keys.iter().map(text).collect::<Vec<_>>(),
            ["\"shape\"", "\"name\"", "\"codecs\"", "\"fill_value\"", "\"x\""]
        );
        assert!(s.items.iter().map(text).any(|t| t == "\"x\": null"));
        assert!(s.values.iter().map(text).any(|t| t == "[{\"name\": \"bytes\"}]"));
        assert!(scan(b"{\"a\": [1, 2}").is_none());
        assert!(scan(b"[1] x").is_none());
        assert!(scan(&[b'['; 100]).is_none());
    }

    #[test]
    fn dropping_an_item_keeps_the_document_well_formed() {
        let d = DOC.as_bytes();
        let s = scan(d).unwrap();
        for item in &s.items {
            let mut edited = d.to_vec();
            edited.splice(with_comma(d, item), []);
            assert!(scan(&edited).is_some(), "{}", String::from_utf8_lossy(&edited));
        }
    }

    #[test]
    fn structural_edits_stay_well_formed() {
        let mut changed = 0;
        for seed in 0..2000 {
            let mut rng = SplitMix64::new(seed);
            let mut doc = DOC.as_bytes().to_vec();
            assert!(mutate(&mut rng, &mut doc, b"[1, {\"order\": [0]}]"));
            assert!(scan(&doc).is_some(), "{}", String::from_utf8_lossy(&doc));
            changed += usize::from(doc != DOC.as_bytes());
        }
        // A value can be swapped for an equal one; the mutator then adds a byte edit.
        assert!(changed > 1800, "{changed}");
        let mut doc = b"not json".to_vec();
        assert!(!mutate(&mut SplitMix64::new(1), &mut doc, b""));
        assert_eq!(doc, b"not json");
    }
}
