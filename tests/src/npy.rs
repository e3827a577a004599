//! A small reader for NumPy `.npy` files (format versions 1.0, 2.0 and 3.0; little- or
//! big-endian; C order), enough to load the reference crops the fixture script saves.
//!
//! Format: <https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html>.

use anyhow::{Context, Result, bail, ensure};
use zarr::DataType;

/// A loaded `.npy` array with its data converted to native-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Npy {
    /// Element type, mapped onto the zarr type of the same size and kind.
    pub data_type: DataType,
    /// Shape in C order (empty for a 0-d array).
    pub shape: Vec<u64>,
    /// Elements in C order, native-endian.
    pub data: Vec<u8>,
}

impl Npy {
    /// Parses an `.npy` file's bytes.
    ///
    /// # Errors
    /// When the magic, version or header is malformed, the dtype is not a plain bool,
    /// integer or float, the array is Fortran-ordered, or the data length does not match
    /// the shape.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        ensure!(bytes.len() >= 10 && &bytes[..6] == b"\x93NUMPY", "not an .npy file (bad magic)");
        let major = bytes[6];
        // Version 1 stores the header length in 2 bytes; versions 2 and 3 in 4 bytes.
        let (header_len, header_start) = match major {
            1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10usize),
            2 | 3 => {
                ensure!(bytes.len() >= 12, "truncated .npy v{major} preamble");
                let n = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
                (usize::try_from(n)?, 12)
            }
            v => bail!("unsupported .npy format version {v}"),
        };
        let header_end = header_start.checked_add(header_len).context("header length overflows")?;
        let header = bytes.get(header_start..header_end).context("truncated .npy header")?;
        let header = std::str::from_utf8(header).context(".npy header is not UTF-8")?;

        let descr = dict_value(header, "descr")?;
        let descr = descr.trim().trim_matches(|c| c == '\'' || c == '"');
        let fortran = dict_value(header, "fortran_order")?;
        ensure!(fortran.trim() == "False", "Fortran-ordered .npy files are not supported");
        let shape = parse_shape(&dict_value(header, "shape")?)?;

        let (order, kind) = descr.split_at(1);
        let data_type = match kind {
            "b1" => DataType::Bool,
            "i1" => DataType::Int8,
            "i2" => DataType::Int16,
            "i4" => DataType::Int32,
            "i8" => DataType::Int64,
            "u1" => DataType::UInt8,
            "u2" => DataType::UInt16,
            "u4" => DataType::UInt32,
            "u8" => DataType::UInt64,
            "f2" => DataType::Float16,
            "f4" => DataType::Float32,
            "f8" => DataType::Float64,
            other => bail!("unsupported .npy dtype `{other}` (descr `{descr}`)"),
        };
        let big_endian = match order {
            "<" | "|" => false,
            ">" => true,
            // `=` is the writer's native order; .npy writers always spell it out, but
            // accept it as this machine's order.
            "=" => cfg!(target_endian = "big"),
            o => bail!("unknown byte-order mark `{o}` in descr `{descr}`"),
        };
        let count =
            shape.iter().try_fold(1u64, |a, &s| a.checked_mul(s)).context("shape overflows")?;
        let size = data_type.size();
        let expected =
            usize::try_from(count)?.checked_mul(size).context("data length overflows")?;
        let mut data = bytes[header_end..].to_vec();
        ensure!(
            data.len() == expected,
            ".npy data has {} bytes, shape {shape:?} of {descr} needs {expected}",
            data.len()
        );
        if big_endian != cfg!(target_endian = "big") && size > 1 {
            for element in data.chunks_exact_mut(size) {
                element.reverse();
            }
        }
        Ok(Self { data_type, shape, data })
    }

    /// Reads and parses an `.npy` file.
    ///
    /// # Errors
    /// I/O errors and those of [`Npy::parse`], with the path attached.
    pub fn read(path: &std::path::Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&bytes).with_context(|| format!("parsing {}", path.display()))
    }
}

/// The text of `key`'s value in the header's Python dict literal.
fn dict_value(header: &str, key: &str) -> Result<String> {
    let pat_single = format!("'{key}':");
    let pat_double = format!("\"{key}\":");
    let start = header
        .find(&pat_single)
        .map(|i| i + pat_single.len())
        .or_else(|| header.find(&pat_double).map(|i| i + pat_double.len()))
        .with_context(|| format!(".npy header has no `{key}`: {header}"))?;
    let rest = header[start..].trim_start();
    // The shape is a tuple that itself contains commas; everything else ends at a comma.
    let end =
        if rest.starts_with('(') { rest.find(')').map(|i| i + 1) } else { rest.find([',', '}']) }
            .with_context(|| format!("unterminated `{key}` in .npy header: {header}"))?;
    Ok(rest[..end].to_owned())
}

fn parse_shape(text: &str) -> Result<Vec<u64>> {
    let inner = text
        .trim()
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .with_context(|| format!("shape `{text}` is not a tuple"))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u64>().with_context(|| format!("shape entry `{s}` is not a number")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&u16::try_from(header.len()).unwrap().to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn little_endian_v1_u16() {
        let b = v1("{'descr': '<u2', 'fortran_order': False, 'shape': (2, 1), }\n", &[1, 0, 2, 1]);
        let n = Npy::parse(&b).unwrap();
        assert_eq!(n.data_type, DataType::UInt16);
        assert_eq!(n.shape, vec![2, 1]);
        let vals: Vec<u16> =
            n.data.chunks_exact(2).map(|c| u16::from_ne_bytes([c[0], c[1]])).collect();
        assert_eq!(vals, vec![1, 258]);
    }

    #[test]
    fn big_endian_v2_i32_is_swapped() {
        let header = "{'descr': '>i4', 'fortran_order': False, 'shape': (2,), }\n";
        let mut b = b"\x93NUMPY\x02\x00".to_vec();
        b.extend_from_slice(&u32::try_from(header.len()).unwrap().to_le_bytes());
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(&(-2i32).to_be_bytes());
        b.extend_from_slice(&70000i32.to_be_bytes());
        let n = Npy::parse(&b).unwrap();
        assert_eq!(n.shape, vec![2]);
        assert_eq!(&n.data[..4], &(-2i32).to_ne_bytes());
        assert_eq!(&n.data[4..], &70000i32.to_ne_bytes());
    }

    #[test]
    fn scalar_shape_and_errors() {
        let b = v1("{'descr': '|b1', 'fortran_order': False, 'shape': (), }\n", &[1]);
        assert_eq!(Npy::parse(&b).unwrap().shape, Vec::<u64>::new());
        let fortran = v1("{'descr': '<u1', 'fortran_order': True, 'shape': (1,), }\n", &[1]);
        assert!(Npy::parse(&fortran).is_err());
        let short = v1("{'descr': '<u2', 'fortran_order': False, 'shape': (3,), }\n", &[1, 2]);
        assert!(Npy::parse(&short).is_err());
        let complex = v1("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }\n", &[0; 8]);
        assert!(Npy::parse(&complex).is_err());
        assert!(Npy::parse(b"not numpy").is_err());
    }
}
