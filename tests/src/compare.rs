//! Value-for-value comparison of a decoded buffer against a reference, with a failure
//! message that names the first mismatching element and its coordinates.

use half::f16;
use zarr::DataType;

/// The first differing element and how many differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Flat C-order index of the first difference.
    pub index: usize,
    /// Its coordinates within the compared box.
    pub coords: Vec<u64>,
    pub expected: String,
    pub got: String,
    /// Total number of differing elements.
    pub count: usize,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} elements differ; first at {:?} (flat {}): expected {}, got {}",
            self.count, self.coords, self.index, self.expected, self.got
        )
    }
}

/// Compares two native-endian buffers of `data_type` elements bit for bit, except that
/// any two NaNs of a float type are equal (payloads are not part of the contract).
/// `shape` is only used to report coordinates.
pub fn compare(
    data_type: DataType,
    shape: &[u64],
    expected: &[u8],
    got: &[u8],
) -> Option<Mismatch> {
    let size = data_type.size();
    let mut first = None;
    let mut count = 0;
    let n = expected.len().max(got.len()) / size;
    for i in 0..n {
        let e = expected.get(i * size..(i + 1) * size);
        let g = got.get(i * size..(i + 1) * size);
        let equal = match (e, g) {
            (Some(e), Some(g)) => e == g || (is_nan(data_type, e) && is_nan(data_type, g)),
            _ => false,
        };
        if !equal {
            count += 1;
            if first.is_none() {
                first = Some((
                    i,
                    e.map(|e| format_value(data_type, e)),
                    g.map(|g| format_value(data_type, g)),
                ));
            }
        }
    }
    first.map(|(index, e, g)| Mismatch {
        index,
        coords: unravel(index as u64, shape),
        expected: e.unwrap_or_else(|| "<past the end>".into()),
        got: g.unwrap_or_else(|| "<past the end>".into()),
        count,
    })
}

fn is_nan(data_type: DataType, b: &[u8]) -> bool {
    match data_type {
        DataType::Float16 => f16::from_ne_bytes([b[0], b[1]]).is_nan(),
        DataType::BFloat16 => half::bf16::from_ne_bytes([b[0], b[1]]).is_nan(),
        DataType::Float32 => f32::from_ne_bytes(b.try_into().unwrap_or_default()).is_nan(),
        DataType::Float64 => f64::from_ne_bytes(b.try_into().unwrap_or_default()).is_nan(),
        _ => false,
    }
}

/// One element as a number followed by its raw bytes, e.g. `-3 (0xfdff)`.
pub fn format_value(data_type: DataType, b: &[u8]) -> String {
    let v = match data_type {
        DataType::Bool => format!("{}", b[0]),
        DataType::Int8 => format!("{}", b[0] as i8),
        DataType::UInt8 => format!("{}", b[0]),
        DataType::Int16 => format!("{}", i16::from_ne_bytes([b[0], b[1]])),
        DataType::UInt16 => format!("{}", u16::from_ne_bytes([b[0], b[1]])),
        DataType::Float16 => format!("{}", f16::from_ne_bytes([b[0], b[1]])),
        DataType::BFloat16 => format!("{}", half::bf16::from_ne_bytes([b[0], b[1]])),
        DataType::Int32 => format!("{}", i32::from_ne_bytes(b.try_into().unwrap_or_default())),
        DataType::UInt32 => format!("{}", u32::from_ne_bytes(b.try_into().unwrap_or_default())),
        DataType::Float32 => format!("{:?}", f32::from_ne_bytes(b.try_into().unwrap_or_default())),
        DataType::Int64 => format!("{}", i64::from_ne_bytes(b.try_into().unwrap_or_default())),
        DataType::UInt64 => format!("{}", u64::from_ne_bytes(b.try_into().unwrap_or_default())),
        DataType::Float64 => format!("{:?}", f64::from_ne_bytes(b.try_into().unwrap_or_default())),
    };
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{v} (0x{hex})")
}

/// C-order coordinates of flat index `i` in `shape`.
pub fn unravel(mut i: u64, shape: &[u64]) -> Vec<u64> {
    let mut coords = vec![0; shape.len()];
    for a in (0..shape.len()).rev() {
        let s = shape[a].max(1);
        coords[a] = i % s;
        i /= s;
    }
    coords
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_payloads_compare_equal_but_other_bits_do_not() {
        let quiet = f32::NAN.to_ne_bytes();
        let other = f32::from_bits(0x7fc0_0001).to_ne_bytes();
        assert_eq!(compare(DataType::Float32, &[1], &quiet, &other), None);
        let zero = 0.0f32.to_ne_bytes();
        let neg_zero = (-0.0f32).to_ne_bytes();
        let m = compare(DataType::Float32, &[1], &zero, &neg_zero).unwrap();
        assert_eq!(m.count, 1);
        // Integers never get the NaN exemption, even when their bits look like one.
        assert!(compare(DataType::UInt32, &[1], &quiet, &other).is_some());
    }

    #[test]
    fn reports_first_coordinates_and_count() {
        let e: Vec<u8> = (0..12u16).flat_map(|v| v.to_ne_bytes()).collect();
        let mut g = e.clone();
        g[2 * 5] ^= 1;
        g[2 * 7] ^= 1;
        let m = compare(DataType::UInt16, &[3, 4], &e, &g).unwrap();
        assert_eq!((m.index, m.coords.clone(), m.count), (5, vec![1, 1], 2));
        assert!(m.expected.starts_with("5 "), "{}", m.expected);
        let short = compare(DataType::UInt16, &[3, 4], &e, &e[..20]).unwrap();
        assert_eq!((short.index, short.count), (10, 2));
        assert_eq!(short.got, "<past the end>");
    }

    #[test]
    fn unravel_is_c_order() {
        assert_eq!(unravel(0, &[2, 3, 4]), vec![0, 0, 0]);
        assert_eq!(unravel(23, &[2, 3, 4]), vec![1, 2, 3]);
        assert_eq!(unravel(5, &[2, 3, 4]), vec![0, 1, 1]);
    }
}
