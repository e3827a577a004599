//! NumPy `.npy` files, read and written: `damacy read` writes them, the conformance tests
//! read zarr-python's reference crops with the same code.
//!
//! Format: <https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html>.
//! A file is the magic `\x93NUMPY`, the version bytes (`1 0` here; `2 0` and `3 0` are
//! read too, with a 4-byte header length), a little-endian `u16` header length, then an
//! ASCII Python dict literal `{'descr': '<u2', 'fortran_order': False, 'shape': (4, 5), }`
//! padded with spaces and ended by `\n` so that the data starts at a multiple of 64
//! bytes, then the raw elements in C order.
//!
//! Elements are bool, integers and IEEE floats of either byte order (`|b1`, `<u2`,
//! `>f8`, ...); in memory they are always native-endian. bfloat16 has no NumPy dtype: its
//! elements are written as `u2` holding the raw bf16 bit patterns
//! (`np.load(f).view(ml_dtypes.bfloat16)` or `(x.astype(np.uint32) << 16).view(np.float32)`
//! recovers the values), and such a file reads back as `uint16`.

use std::io::Write;
use std::path::{Path, PathBuf};

use zarr::DataType;

/// Everything that can go wrong writing or reading a `.npy` file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NpyError {
    /// A descr this module does not read (complex, structured, strings, ...).
    #[error(
        "unsupported npy descr `{descr}`: bool, integer and float elements are read (`|b1`, `<u2`, `>f8`, ...)"
    )]
    UnsupportedDescr { descr: String },
    /// The data length does not match the shape and element size.
    #[error(
        "npy data has {got} bytes, shape {shape:?} of {item_size}-byte elements needs {expected}"
    )]
    DataLength { shape: Vec<u64>, item_size: usize, expected: u64, got: u64 },
    /// The header does not fit format 1.0's 16-bit header length.
    #[error("npy header of {len} bytes does not fit format 1.0 (max 65535)")]
    HeaderTooLong { len: usize },
    /// The array is stored in Fortran order, which this module does not read.
    #[error("npy array is in Fortran order; save it C-ordered (np.ascontiguousarray)")]
    FortranOrder,
    /// The bytes are not a valid `.npy` file; `reason` names the failed check.
    #[error("malformed npy: {reason}")]
    Malformed { reason: &'static str },
    /// Reading or writing a file failed (the path is empty for a caller's writer).
    #[error("npy file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The file at `path` could not be parsed.
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: Box<NpyError>,
    },
}

/// The byte-order mark of multi-byte elements in memory, which is how they are written.
const NATIVE_ORDER: char = if cfg!(target_endian = "big") { '>' } else { '<' };

/// The descr kind (type character and size) of a data type; bfloat16 is `u2` (raw bits).
fn kind_of(dtype: DataType) -> &'static str {
    match dtype {
        DataType::Bool => "b1",
        DataType::Int8 => "i1",
        DataType::UInt8 => "u1",
        DataType::Int16 => "i2",
        DataType::UInt16 | DataType::BFloat16 => "u2",
        DataType::Float16 => "f2",
        DataType::Int32 => "i4",
        DataType::UInt32 => "u4",
        DataType::Float32 => "f4",
        DataType::Int64 => "i8",
        DataType::UInt64 => "u8",
        DataType::Float64 => "f8",
    }
}

/// The data type a descr kind reads as (the inverse of [`kind_of`] but for bfloat16).
fn dtype_of_kind(kind: &str) -> Option<DataType> {
    Some(match kind {
        "b1" => DataType::Bool,
        "i1" => DataType::Int8,
        "u1" => DataType::UInt8,
        "i2" => DataType::Int16,
        "u2" => DataType::UInt16,
        "f2" => DataType::Float16,
        "i4" => DataType::Int32,
        "u4" => DataType::UInt32,
        "f4" => DataType::Float32,
        "i8" => DataType::Int64,
        "u8" => DataType::UInt64,
        "f8" => DataType::Float64,
        _ => return None,
    })
}

/// The descr [`write_npy`] writes for `dtype`: `|` for one-byte elements, else this
/// machine's byte order (`<` on little-endian machines); bfloat16 is `u2` (raw bits).
pub fn descr_of(dtype: DataType) -> String {
    let order = if dtype.size() == 1 { '|' } else { NATIVE_ORDER };
    format!("{order}{}", kind_of(dtype))
}

/// The header bytes (magic through the newline) of a format 1.0 file.
fn header(descr: &str, shape: &[u64]) -> Result<Vec<u8>, NpyError> {
    let shape_str = match shape {
        [] => "()".to_owned(),
        [n] => format!("({n},)"),
        _ => format!("({})", shape.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")),
    };
    let mut dict =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_str}, }}");
    // magic (6) + version (2) + length (2) + dict + '\n' must be a multiple of 64.
    let unpadded = 10 + dict.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    dict.extend(std::iter::repeat_n(' ', pad));
    dict.push('\n');
    let len = u16::try_from(dict.len()).map_err(|_| NpyError::HeaderTooLong { len: dict.len() })?;
    let mut out = Vec::with_capacity(10 + dict.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    Ok(out)
}

/// Checks that `data` holds exactly `prod(shape)` elements of `item_size` bytes.
fn check_len(item_size: usize, shape: &[u64], data: &[u8]) -> Result<(), NpyError> {
    let expected =
        shape.iter().try_fold(item_size as u64, |acc, &d| acc.checked_mul(d)).unwrap_or(u64::MAX);
    if expected != data.len() as u64 {
        return Err(NpyError::DataLength {
            shape: shape.to_vec(),
            item_size,
            expected,
            got: data.len() as u64,
        });
    }
    Ok(())
}

/// Writes a `.npy` (format 1.0, C order) of `dtype` elements to `w`. `data` holds the
/// elements in C order, native-endian (as a [`Npy`] read back holds them).
///
/// # Errors
/// `DataLength`, `HeaderTooLong`, and `Io` (with an empty path) when the writer fails.
pub fn write_npy<W: Write>(
    mut w: W,
    dtype: DataType,
    shape: &[u64],
    data: &[u8],
) -> Result<(), NpyError> {
    check_len(dtype.size(), shape, data)?;
    let head = header(&descr_of(dtype), shape)?;
    let io = |source| NpyError::Io { path: PathBuf::new(), source };
    w.write_all(&head).map_err(io)?;
    w.write_all(data).map_err(io)?;
    w.flush().map_err(io)
}

/// Writes a `.npy` file at `path` (created or truncated); see [`write_npy`].
///
/// # Errors
/// As [`write_npy`]; `Io` names `path`. Nothing is created when `data` does not match.
pub fn write_npy_file(
    path: &Path,
    dtype: DataType,
    shape: &[u64],
    data: &[u8],
) -> Result<(), NpyError> {
    check_len(dtype.size(), shape, data)?;
    let file = std::fs::File::create(path)
        .map_err(|source| NpyError::Io { path: path.to_owned(), source })?;
    write_npy(std::io::BufWriter::new(file), dtype, shape, data).map_err(|e| match e {
        NpyError::Io { source, .. } => NpyError::Io { path: path.to_owned(), source },
        other => other,
    })
}

/// A `.npy` array in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Npy {
    /// Element type (a file's `u2` is `UInt16`, also when it holds bfloat16 bits).
    pub data_type: DataType,
    /// Shape in C order (empty for a 0-d array).
    pub shape: Vec<u64>,
    /// Elements in C order, native-endian.
    pub data: Vec<u8>,
}

impl Npy {
    /// Parses a `.npy` file's bytes (format versions 1.0, 2.0 and 3.0), swapping
    /// elements stored in the other byte order to native.
    ///
    /// # Errors
    /// `Malformed` naming the failed check, `UnsupportedDescr`, `FortranOrder`,
    /// `DataLength`. Never panics, whatever the bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, NpyError> {
        let bad = |reason| NpyError::Malformed { reason };
        let rest = bytes.strip_prefix(b"\x93NUMPY").ok_or(bad("missing \\x93NUMPY magic"))?;
        let (major, rest) = rest.split_first().ok_or(bad("truncated version"))?;
        let (_minor, rest) = rest.split_first().ok_or(bad("truncated version"))?;
        // Version 1 stores the header length in 2 bytes; versions 2 and 3 in 4 bytes.
        let (hlen, rest) = match major {
            1 => {
                let (l, r) = rest.split_at_checked(2).ok_or(bad("truncated header length"))?;
                (usize::from(u16::from_le_bytes([l[0], l[1]])), r)
            }
            2 | 3 => {
                let (l, r) = rest.split_at_checked(4).ok_or(bad("truncated header length"))?;
                let n = u32::from_le_bytes([l[0], l[1], l[2], l[3]]);
                (usize::try_from(n).map_err(|_| bad("header length too large"))?, r)
            }
            _ => return Err(bad("unsupported format version")),
        };
        let (head, data) = rest.split_at_checked(hlen).ok_or(bad("header longer than the file"))?;
        let head = std::str::from_utf8(head).map_err(|_| bad("header is not text"))?;

        let descr = dict_value(head, "descr").ok_or(bad("header has no 'descr'"))?;
        let descr = quoted(descr).ok_or(bad("'descr' is not a string"))?;
        let unsupported = || NpyError::UnsupportedDescr { descr: descr.to_owned() };
        let (order, kind) = descr.split_at_checked(1).ok_or_else(unsupported)?;
        let data_type = dtype_of_kind(kind).ok_or_else(unsupported)?;
        let big_endian = match order {
            "<" | "|" => false,
            ">" => true,
            // `=` is the writer's native order; writers spell it out, but accept it as
            // this machine's.
            "=" => cfg!(target_endian = "big"),
            _ => return Err(unsupported()),
        };

        let fortran =
            dict_value(head, "fortran_order").ok_or(bad("header has no 'fortran_order'"))?;
        if fortran.starts_with("True") {
            return Err(NpyError::FortranOrder);
        }
        if !fortran.starts_with("False") {
            return Err(bad("'fortran_order' is not a bool"));
        }

        let shape = dict_value(head, "shape").ok_or(bad("header has no 'shape'"))?;
        let shape = shape
            .strip_prefix('(')
            .and_then(|s| s.split_once(')'))
            .map(|(s, _)| s)
            .ok_or(bad("'shape' is not a tuple"))?
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<u64>().map_err(|_| bad("'shape' holds a non-integer")))
            .collect::<Result<Vec<_>, _>>()?;

        let size = data_type.size();
        check_len(size, &shape, data)?;
        let mut data = data.to_vec();
        if big_endian != cfg!(target_endian = "big") && size > 1 {
            for element in data.chunks_exact_mut(size) {
                element.reverse();
            }
        }
        Ok(Self { data_type, shape, data })
    }

    /// Reads and parses the `.npy` file at `path`.
    ///
    /// # Errors
    /// `Io` when the file cannot be read; `File` naming the path around
    /// [`Npy::parse`]'s errors.
    pub fn read(path: &Path) -> Result<Self, NpyError> {
        let bytes =
            std::fs::read(path).map_err(|source| NpyError::Io { path: path.to_owned(), source })?;
        Self::parse(&bytes)
            .map_err(|e| NpyError::File { path: path.to_owned(), source: Box::new(e) })
    }
}

/// The text after `'key':` (or `"key":`), leading spaces trimmed, in a header dict.
fn dict_value<'a>(head: &'a str, key: &str) -> Option<&'a str> {
    [format!("'{key}':"), format!("\"{key}\":")]
        .iter()
        .find_map(|pat| head.find(pat.as_str()).map(|at| &head[at + pat.len()..]))
        .map(str::trim_start)
}

/// The contents of the quoted string (`'...'` or `"..."`) that `text` starts with.
fn quoted(text: &str) -> Option<&str> {
    let quote = text.chars().next().filter(|&c| c == '\'' || c == '"')?;
    text[1..].split_once(quote).map(|(inside, _)| inside)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A file of format version `major` with the given header text and data.
    fn file(major: u8, header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = vec![0x93, b'N', b'U', b'M', b'P', b'Y', major, 0];
        if major == 1 {
            out.extend_from_slice(&u16::try_from(header.len()).unwrap().to_le_bytes());
        } else {
            out.extend_from_slice(&u32::try_from(header.len()).unwrap().to_le_bytes());
        }
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn header_matches_numpy_layout() {
        let mut out = Vec::new();
        write_npy(&mut out, DataType::UInt16, &[2, 3], &[0u8; 12]).unwrap();
        // NumPy 1.x writes exactly this header for np.zeros((2,3), '<u2').
        let expected_dict = "{'descr': '<u2', 'fortran_order': False, 'shape': (2, 3), }";
        assert_eq!(&out[..8], b"\x93NUMPY\x01\x00");
        let hlen = usize::from(u16::from_le_bytes([out[8], out[9]]));
        assert_eq!((10 + hlen) % 64, 0);
        let head = std::str::from_utf8(&out[10..10 + hlen]).unwrap();
        assert!(head.starts_with(expected_dict), "{head:?}");
        assert!(head.ends_with('\n'));
        assert_eq!(head.trim_end(), expected_dict);
        assert_eq!(out.len(), 10 + hlen + 12);
    }

    #[test]
    fn one_d_and_scalar_shapes() {
        let mut out = Vec::new();
        write_npy(&mut out, DataType::UInt8, &[5], &[1, 2, 3, 4, 5]).unwrap();
        let s = String::from_utf8_lossy(&out);
        assert!(s.contains("'shape': (5,), }"));
        let back = Npy::parse(&out).unwrap();
        assert_eq!(back.shape, vec![5]);
        assert_eq!(back.data, [1, 2, 3, 4, 5]);

        let mut out = Vec::new();
        write_npy(&mut out, DataType::Float32, &[], &1.5f32.to_ne_bytes()).unwrap();
        assert!(String::from_utf8_lossy(&out).contains("'shape': (), }"));
        assert_eq!(Npy::parse(&out).unwrap().shape, Vec::<u64>::new());
    }

    #[test]
    fn writer_rejects_data_of_the_wrong_length() {
        let mut out = Vec::new();
        assert!(matches!(
            write_npy(&mut out, DataType::UInt16, &[2, 3], &[0u8; 11]),
            Err(NpyError::DataLength { expected: 12, got: 11, item_size: 2, .. })
        ));
        assert!(out.is_empty());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        assert!(matches!(
            write_npy_file(&path, DataType::Int64, &[2], &[0u8; 8]),
            Err(NpyError::DataLength { expected: 16, got: 8, .. })
        ));
        assert!(!path.exists(), "no file on a length error");
    }

    #[test]
    fn descr_of_maps_bf16_to_raw_u16() {
        if cfg!(target_endian = "little") {
            assert_eq!(descr_of(DataType::BFloat16), "<u2");
            assert_eq!(descr_of(DataType::Float16), "<f2");
        }
        assert_eq!(descr_of(DataType::UInt8), "|u1");
        assert_eq!(descr_of(DataType::Bool), "|b1");
        for d in DataType::ALL {
            let mut out = Vec::new();
            write_npy(&mut out, d, &[1], &vec![0; d.size()]).unwrap();
            let back = Npy::parse(&out).unwrap().data_type;
            let expected = if d == DataType::BFloat16 { DataType::UInt16 } else { d };
            assert_eq!(back, expected, "{d}");
        }
    }

    #[test]
    fn little_endian_v1_u16() {
        let b =
            file(1, "{'descr': '<u2', 'fortran_order': False, 'shape': (2, 1), }\n", &[1, 0, 2, 1]);
        let n = Npy::parse(&b).unwrap();
        assert_eq!((n.data_type, n.shape.as_slice()), (DataType::UInt16, &[2, 1][..]));
        let vals: Vec<u16> =
            n.data.chunks_exact(2).map(|c| u16::from_ne_bytes([c[0], c[1]])).collect();
        assert_eq!(vals, vec![1, 258]);
    }

    #[test]
    fn big_endian_v2_i32_is_swapped_to_native() {
        let mut data = (-2i32).to_be_bytes().to_vec();
        data.extend_from_slice(&70000i32.to_be_bytes());
        let b = file(2, "{'descr': '>i4', 'fortran_order': False, 'shape': (2,), }\n", &data);
        let n = Npy::parse(&b).unwrap();
        assert_eq!((n.data_type, n.shape.as_slice()), (DataType::Int32, &[2][..]));
        assert_eq!(&n.data[..4], &(-2i32).to_ne_bytes());
        assert_eq!(&n.data[4..], &70000i32.to_ne_bytes());
        // Double-quoted keys and values, as some writers spell them.
        let b = file(3, "{\"descr\": \"|b1\", \"fortran_order\": False, \"shape\": ()}\n", &[1]);
        assert_eq!(
            Npy::parse(&b).unwrap(),
            Npy { data_type: DataType::Bool, shape: vec![], data: vec![1] }
        );
    }

    #[test]
    fn reader_rejects_what_it_does_not_read() {
        let header = |descr: &str, fortran: &str, shape: &str| {
            format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}\n")
        };
        let fortran = file(1, &header("<u1", "True", "(1,)"), &[1]);
        assert!(matches!(Npy::parse(&fortran), Err(NpyError::FortranOrder)));
        let short = file(1, &header("<u2", "False", "(3,)"), &[1, 2]);
        assert!(matches!(
            Npy::parse(&short),
            Err(NpyError::DataLength { expected: 6, got: 2, .. })
        ));
        for descr in ["<c8", "<U4", "u2", "!u2", ""] {
            let f = file(1, &header(descr, "False", "(1,)"), &[0; 8]);
            assert!(
                matches!(Npy::parse(&f), Err(NpyError::UnsupportedDescr { descr: d }) if d == descr),
                "{descr}"
            );
        }
        assert!(matches!(Npy::parse(b"not numpy"), Err(NpyError::Malformed { .. })));
        let v9 = file(1, &header("<u1", "False", "(1,)"), &[1]);
        let v9 = [&v9[..6], &[9], &v9[7..]].concat();
        assert!(matches!(Npy::parse(&v9), Err(NpyError::Malformed { .. })));
    }

    #[test]
    fn file_round_trip_and_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        let data: Vec<u8> = (0u32..24).flat_map(|v| (v as f32).to_ne_bytes()).collect();
        write_npy_file(&path, DataType::Float32, &[2, 3, 4], &data).unwrap();
        let back = Npy::read(&path).unwrap();
        assert_eq!(back, Npy { data_type: DataType::Float32, shape: vec![2, 3, 4], data });

        let missing = dir.path().join("missing.npy");
        assert!(matches!(Npy::read(&missing), Err(NpyError::Io { path, .. }) if path == missing));
        std::fs::write(&path, b"garbage").unwrap();
        let err = Npy::read(&path).unwrap_err();
        assert!(matches!(&err, NpyError::File { path: p, .. } if p == &path), "{err}");
        assert!(err.to_string().contains("x.npy"), "{err}");
    }

    proptest! {
        #[test]
        fn round_trip(shape in proptest::collection::vec(0u64..5, 0..5), di in 0usize..13, seed in any::<u8>()) {
            let dtype = DataType::ALL[di];
            let n: u64 = shape.iter().product();
            let data: Vec<u8> = (0..n as usize * dtype.size()).map(|i| (i as u8).wrapping_mul(seed)).collect();
            let mut out = Vec::new();
            write_npy(&mut out, dtype, &shape, &data).unwrap();
            let data_type = if dtype == DataType::BFloat16 { DataType::UInt16 } else { dtype };
            prop_assert_eq!(Npy::parse(&out).unwrap(), Npy { data_type, shape, data });
        }

        #[test]
        fn reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Npy::parse(&bytes);
            let mut with_magic = b"\x93NUMPY\x01\x00".to_vec();
            with_magic.extend_from_slice(&bytes);
            let _ = Npy::parse(&with_magic);
        }
    }
}
