//! Data types and fill values (zarr v3 core spec §"Data types" and §"fill_value").

use crate::error::{Error, Result};

/// An element type of a zarr array. `BFloat16` is accepted where spelled `bfloat16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataType {
    Bool,
    Int8,
    Int16,
    Int32,
    Int64,
    UInt8,
    UInt16,
    UInt32,
    UInt64,
    Float16,
    BFloat16,
    Float32,
    Float64,
}

impl DataType {
    /// Every data type, in a fixed order (useful for tests and tables).
    pub const ALL: [DataType; 13] = [
        DataType::Bool,
        DataType::Int8,
        DataType::Int16,
        DataType::Int32,
        DataType::Int64,
        DataType::UInt8,
        DataType::UInt16,
        DataType::UInt32,
        DataType::UInt64,
        DataType::Float16,
        DataType::BFloat16,
        DataType::Float32,
        DataType::Float64,
    ];

    /// Parses the spec's spelling (`"uint16"`, `"float32"`, `"bfloat16"`, ...).
    ///
    /// # Errors
    /// `Error::UnsupportedDataType` naming the spelling for anything else.
    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|d| d.name() == name)
            .ok_or_else(|| Error::UnsupportedDataType { name: name.to_owned() })
    }

    /// The spec's spelling.
    pub fn name(self) -> &'static str {
        match self {
            DataType::Bool => "bool",
            DataType::Int8 => "int8",
            DataType::Int16 => "int16",
            DataType::Int32 => "int32",
            DataType::Int64 => "int64",
            DataType::UInt8 => "uint8",
            DataType::UInt16 => "uint16",
            DataType::UInt32 => "uint32",
            DataType::UInt64 => "uint64",
            DataType::Float16 => "float16",
            DataType::BFloat16 => "bfloat16",
            DataType::Float32 => "float32",
            DataType::Float64 => "float64",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DataType::Bool | DataType::Int8 | DataType::UInt8 => 1,
            DataType::Int16 | DataType::UInt16 | DataType::Float16 | DataType::BFloat16 => 2,
            DataType::Int32 | DataType::UInt32 | DataType::Float32 => 4,
            DataType::Int64 | DataType::UInt64 | DataType::Float64 => 8,
        }
    }

    /// True for the floating-point types.
    pub fn is_float(self) -> bool {
        matches!(
            self,
            DataType::Float16 | DataType::BFloat16 | DataType::Float32 | DataType::Float64
        )
    }
}

impl std::fmt::Display for DataType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One element's value, held as its native-endian bytes (`len == dtype.size()`).
///
/// Storing bytes rather than a number keeps every spelling exact: NaN payloads from hex
/// patterns, `-0.0`, and u64 values above 2^53 all survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FillValue {
    bytes: [u8; 8],
    len: u8,
}

impl FillValue {
    /// The all-zero value of `dtype` (what `0`, `false` and `0.0` spell).
    pub fn zero(dtype: DataType) -> Self {
        // Sizes are 1..=8 by construction, so the cast cannot truncate.
        Self { bytes: [0; 8], len: dtype.size() as u8 }
    }

    /// Builds a fill value from native-endian bytes.
    ///
    /// # Errors
    /// `Error::FillValue` when `bytes.len() != dtype.size()`.
    pub fn from_ne_bytes(dtype: DataType, bytes: &[u8]) -> Result<Self> {
        if bytes.len() != dtype.size() {
            return Err(Error::FillValue {
                data_type: dtype.name(),
                reason: "byte length does not match the data type's size",
            });
        }
        let mut out = [0u8; 8];
        out[..bytes.len()].copy_from_slice(bytes);
        Ok(Self { bytes: out, len: dtype.size() as u8 })
    }

    /// The native-endian bytes of one element.
    pub fn as_ne_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Writes the value repeatedly over `out` (whose length must be a multiple of the
    /// element size; a trailing partial element is left untouched).
    pub fn fill(&self, out: &mut [u8]) {
        let v = self.as_ne_bytes();
        if v.iter().all(|&b| b == 0) {
            out.fill(0);
            return;
        }
        for dst in out.chunks_exact_mut(v.len()) {
            dst.copy_from_slice(v);
        }
    }
}
