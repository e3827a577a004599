//! NumPy `.npy` writing (format version 1.0, C order, little-endian) and a small reader.
//!
//! Format: <https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html>.
//! A file is the magic `\x93NUMPY`, the version bytes `1 0`, a little-endian `u16` header
//! length, then an ASCII Python dict literal
//! `{'descr': '<u2', 'fortran_order': False, 'shape': (4, 5), }` padded with spaces and
//! ended by `\n` so that the data starts at a multiple of 64 bytes, then the raw elements.
//!
//! bfloat16 has no NumPy dtype: its elements are written with descr `'<u2'` holding the raw
//! bf16 bit patterns (`np.load(f).view(ml_dtypes.bfloat16)` or
//! `(x.astype(np.uint32) << 16).view(np.float32)` recovers the values).

use std::io::Write;
use std::path::{Path, PathBuf};

use zarr::DataType;

/// Everything that can go wrong writing or reading a `.npy` file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NpyError {
    /// A descr this module does not write.
    #[error("unsupported npy descr `{descr}` (supported: {SUPPORTED})", SUPPORTED = DESCRS.join(", "))]
    UnsupportedDescr { descr: String },
    /// The data length does not match the shape and element size.
    #[error(
        "npy data has {got} bytes, shape {shape:?} of {item_size}-byte elements needs {expected}"
    )]
    DataLength { shape: Vec<u64>, item_size: usize, expected: u64, got: u64 },
    /// The header does not fit format 1.0's 16-bit header length.
    #[error("npy header of {len} bytes does not fit format 1.0 (max 65535)")]
    HeaderTooLong { len: usize },
    /// Writing failed.
    #[error("writing npy file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A file being read is not a valid `.npy` this reader understands.
    #[error("malformed npy: {reason}")]
    Malformed { reason: &'static str },
}

/// The descrs this module writes (and reads), with their element sizes.
const DESCR_SIZES: [(&str, usize); 12] = [
    ("|b1", 1),
    ("|i1", 1),
    ("|u1", 1),
    ("<i2", 2),
    ("<u2", 2),
    ("<f2", 2),
    ("<i4", 4),
    ("<u4", 4),
    ("<f4", 4),
    ("<i8", 8),
    ("<u8", 8),
    ("<f8", 8),
];
const DESCRS: [&str; 12] = {
    let mut out = [""; 12];
    let mut i = 0;
    while i < 12 {
        out[i] = DESCR_SIZES[i].0;
        i += 1;
    }
    out
};

/// The element size of a supported descr.
///
/// # Errors
/// `UnsupportedDescr` for anything not in the supported list.
pub fn descr_size(descr: &str) -> Result<usize, NpyError> {
    DESCR_SIZES
        .iter()
        .find(|(d, _)| *d == descr)
        .map(|&(_, s)| s)
        .ok_or_else(|| NpyError::UnsupportedDescr { descr: descr.to_owned() })
}

/// The descr for little-endian elements of a zarr data type; bfloat16 is `'<u2'` (raw
/// bits, see the module documentation).
pub fn descr_of(dtype: DataType) -> &'static str {
    match dtype {
        DataType::Bool => "|b1",
        DataType::Int8 => "|i1",
        DataType::UInt8 => "|u1",
        DataType::Int16 => "<i2",
        DataType::UInt16 | DataType::BFloat16 => "<u2",
        DataType::Float16 => "<f2",
        DataType::Int32 => "<i4",
        DataType::UInt32 => "<u4",
        DataType::Float32 => "<f4",
        DataType::Int64 => "<i8",
        DataType::UInt64 => "<u8",
        DataType::Float64 => "<f8",
    }
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

/// Checks that `data` holds exactly `prod(shape)` elements of `descr`.
fn check_len(descr: &str, shape: &[u64], data: &[u8]) -> Result<(), NpyError> {
    let item_size = descr_size(descr)?;
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

/// Writes a `.npy` (format 1.0, C order) to `w`. `data` holds the elements in C order,
/// little-endian, as `descr` says.
///
/// # Errors
/// `UnsupportedDescr`, `DataLength`, `HeaderTooLong`, and `Io` (with an empty path) when
/// the writer fails.
pub fn write_npy<W: Write>(
    mut w: W,
    descr: &str,
    shape: &[u64],
    data: &[u8],
) -> Result<(), NpyError> {
    check_len(descr, shape, data)?;
    let head = header(descr, shape)?;
    let io = |source| NpyError::Io { path: PathBuf::new(), source };
    w.write_all(&head).map_err(io)?;
    w.write_all(data).map_err(io)?;
    w.flush().map_err(io)
}

/// Writes a `.npy` file at `path` (created or truncated); see [`write_npy`].
///
/// # Errors
/// As [`write_npy`]; `Io` names `path`.
pub fn write_npy_file(
    path: &Path,
    descr: &str,
    shape: &[u64],
    data: &[u8],
) -> Result<(), NpyError> {
    check_len(descr, shape, data)?;
    let file = std::fs::File::create(path)
        .map_err(|source| NpyError::Io { path: path.to_owned(), source })?;
    write_npy(std::io::BufWriter::new(file), descr, shape, data).map_err(|e| match e {
        NpyError::Io { source, .. } => NpyError::Io { path: path.to_owned(), source },
        other => other,
    })
}

/// A parsed `.npy` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Npy {
    pub descr: String,
    pub fortran_order: bool,
    pub shape: Vec<u64>,
    /// The raw element bytes.
    pub data: Vec<u8>,
}

/// Parses a `.npy` file (versions 1.0, 2.0 and 3.0) whose header this module's writer, or
/// NumPy, wrote. Only the descrs this module supports are accepted.
///
/// # Errors
/// `Malformed` naming the failed check, `UnsupportedDescr`, `DataLength`.
pub fn read_npy(bytes: &[u8]) -> Result<Npy, NpyError> {
    let bad = |reason| NpyError::Malformed { reason };
    let rest = bytes.strip_prefix(b"\x93NUMPY").ok_or(bad("missing \\x93NUMPY magic"))?;
    let (major, rest) = rest.split_first().ok_or(bad("truncated version"))?;
    let (_minor, rest) = rest.split_first().ok_or(bad("truncated version"))?;
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
    let descr = descr
        .strip_prefix('\'')
        .and_then(|d| d.split_once('\''))
        .map(|(d, _)| d.to_owned())
        .ok_or(bad("'descr' is not a string"))?;
    let fortran = dict_value(head, "fortran_order").ok_or(bad("header has no 'fortran_order'"))?;
    let fortran_order = if fortran.starts_with("True") {
        true
    } else if fortran.starts_with("False") {
        false
    } else {
        return Err(bad("'fortran_order' is not a bool"));
    };
    let shape_str = dict_value(head, "shape").ok_or(bad("header has no 'shape'"))?;
    let inner = shape_str
        .strip_prefix('(')
        .and_then(|s| s.split_once(')'))
        .map(|(s, _)| s)
        .ok_or(bad("'shape' is not a tuple"))?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u64>().map_err(|_| bad("'shape' holds a non-integer")))
        .collect::<Result<Vec<_>, _>>()?;
    check_len(&descr, &shape, data)?;
    Ok(Npy { descr, fortran_order, shape, data: data.to_vec() })
}

/// The text after `'key':` (leading spaces trimmed) in a header dict.
fn dict_value<'a>(head: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("'{key}':");
    let at = head.find(&pat)?;
    Some(head[at + pat.len()..].trim_start())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_matches_numpy_layout() {
        let mut out = Vec::new();
        write_npy(&mut out, "<u2", &[2, 3], &[0u8; 12]).unwrap();
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
        write_npy(&mut out, "|u1", &[5], &[1, 2, 3, 4, 5]).unwrap();
        let s = String::from_utf8_lossy(&out);
        assert!(s.contains("'shape': (5,), }"));
        let back = read_npy(&out).unwrap();
        assert_eq!(back.shape, vec![5]);
        assert_eq!(back.data, [1, 2, 3, 4, 5]);

        let mut out = Vec::new();
        write_npy(&mut out, "<f4", &[], &1.5f32.to_le_bytes()).unwrap();
        assert!(String::from_utf8_lossy(&out).contains("'shape': (), }"));
        assert_eq!(read_npy(&out).unwrap().shape, Vec::<u64>::new());
    }

    #[test]
    fn rejects_bad_inputs() {
        let mut out = Vec::new();
        assert!(matches!(
            write_npy(&mut out, "<u2", &[2, 3], &[0u8; 11]),
            Err(NpyError::DataLength { expected: 12, got: 11, .. })
        ));
        assert!(matches!(
            write_npy(&mut out, ">u2", &[1], &[0u8; 2]),
            Err(NpyError::UnsupportedDescr { .. })
        ));
        assert!(out.is_empty());
        assert!(matches!(read_npy(b"NUMPY"), Err(NpyError::Malformed { .. })));
    }

    #[test]
    fn descr_of_maps_bf16_to_raw_u16() {
        assert_eq!(descr_of(DataType::BFloat16), "<u2");
        assert_eq!(descr_of(DataType::Float16), "<f2");
        assert_eq!(descr_of(DataType::UInt8), "|u1");
        for d in DataType::ALL {
            assert_eq!(descr_size(descr_of(d)).unwrap(), d.size());
        }
    }

    #[test]
    fn file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        let data: Vec<u8> = (0u32..24).flat_map(|v| (v as f32).to_le_bytes()).collect();
        write_npy_file(&path, "<f4", &[2, 3, 4], &data).unwrap();
        let back = read_npy(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            back,
            Npy { descr: "<f4".into(), fortran_order: false, shape: vec![2, 3, 4], data }
        );
    }

    proptest! {
        #[test]
        fn round_trip(shape in proptest::collection::vec(0u64..5, 0..5), di in 0usize..12, seed in any::<u8>()) {
            let (descr, size) = DESCR_SIZES[di];
            let n: u64 = shape.iter().product();
            let data: Vec<u8> = (0..n as usize * size).map(|i| (i as u8).wrapping_mul(seed)).collect();
            let mut out = Vec::new();
            write_npy(&mut out, descr, &shape, &data).unwrap();
            let back = read_npy(&out).unwrap();
            prop_assert_eq!(back, Npy { descr: descr.into(), fortran_order: false, shape, data });
        }

        #[test]
        fn reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = read_npy(&bytes);
            let mut with_magic = b"\x93NUMPY\x01\x00".to_vec();
            with_magic.extend_from_slice(&bytes);
            let _ = read_npy(&with_magic);
        }
    }
}
