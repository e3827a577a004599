//! The output element type of a batch ([`OutDtype`]: its one definition, used by the
//! planner, the kernels, both engines, the CLI and the configuration) and the rule for
//! which source data types reach it.
//!
//! The rule: every zarr data type can be delivered as `F32`, `Bf16` or `F16`; `Native`
//! delivers the source type unchanged and therefore needs every sample of a batch to share
//! one data type. A cast is [`Cast::Exact`] when every source value is representable in the
//! output and [`Cast::Rounded`] otherwise (round to nearest even, overflow to ±infinity,
//! NaN stays NaN; `bool` is 0 or 1). "No cast path" arises only for `Native` across mixed
//! data types.

use serde::{Deserialize, Serialize};

use crate::dtype::DataType;
use crate::error::{Error, Result};

/// The element type requested for a batch's output tensor. Serialized (JSON, TOML) and
/// parsed (CLI) as `f32`, `bf16`, `f16`, `native`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutDtype {
    /// 32-bit float.
    #[default]
    F32,
    /// bfloat16, rounded to nearest even from the f32 value (canonical NaN `0x7fc0`).
    Bf16,
    /// IEEE half, rounded to nearest even from the f32 value (canonical NaN `0x7e00`).
    F16,
    /// The source data type, bit for bit; every array of a pipeline must share it.
    Native,
}

/// How a source value becomes an output value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cast {
    /// Same type: a byte copy.
    Identity,
    /// A conversion that represents every source value exactly.
    Exact,
    /// A conversion that may round or overflow (defined as round to nearest even,
    /// overflow to ±infinity).
    Rounded,
}

impl OutDtype {
    /// Every output type.
    pub const ALL: [OutDtype; 4] = [OutDtype::F32, OutDtype::Bf16, OutDtype::F16, OutDtype::Native];

    /// The spelling in configuration files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            OutDtype::F32 => "f32",
            OutDtype::Bf16 => "bf16",
            OutDtype::F16 => "f16",
            OutDtype::Native => "native",
        }
    }

    /// Parses [`OutDtype::name`]'s spelling.
    ///
    /// # Errors
    /// `Error::UnsupportedOutDtype` naming the spelling and the accepted ones.
    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|d| d.name() == name)
            .ok_or_else(|| Error::UnsupportedOutDtype { name: name.to_owned() })
    }

    /// Bytes per output element for samples of data type `source`.
    pub fn size(self, source: DataType) -> usize {
        self.element(source).size()
    }

    /// Bytes per output element whatever the source: `Native` takes the widest source type
    /// (8 bytes), for buffers sized before the arrays' types are known.
    pub fn max_size(self) -> usize {
        match self {
            OutDtype::Native => 8,
            other => other.size(DataType::Float32),
        }
    }

    /// The output element type for samples of data type `source`.
    pub fn element(self, source: DataType) -> DataType {
        match self {
            OutDtype::F32 => DataType::Float32,
            OutDtype::Bf16 => DataType::BFloat16,
            OutDtype::F16 => DataType::Float16,
            OutDtype::Native => source,
        }
    }

    /// How `source` values are converted to this output type.
    pub fn cast(self, source: DataType) -> Cast {
        use DataType as D;
        let out = self.element(source);
        if out == source {
            return Cast::Identity;
        }
        // Significand bits (with the implicit bit) decide exactness for integers; every
        // narrower float is a subset of f32, while f16 and bf16 are not subsets of each other.
        let exact = matches!(
            (out, source),
            (D::Float32, D::Bool | D::Int8 | D::UInt8 | D::Int16 | D::UInt16)
                | (D::Float32, D::Float16 | D::BFloat16)
                | (D::Float16 | D::BFloat16, D::Bool | D::Int8 | D::UInt8)
        );
        if exact { Cast::Exact } else { Cast::Rounded }
    }
}

impl std::fmt::Display for OutDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sizes_and_serde_agree() {
        for d in OutDtype::ALL {
            assert_eq!(OutDtype::parse(d.name()).unwrap(), d);
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(json, format!("\"{}\"", d.name()));
            assert_eq!(serde_json::from_str::<OutDtype>(&json).unwrap(), d);
        }
        assert!(matches!(OutDtype::parse("f64"), Err(Error::UnsupportedOutDtype { .. })));
        assert_eq!(OutDtype::F32.size(DataType::UInt8), 4);
        assert_eq!(OutDtype::Bf16.size(DataType::Float64), 2);
        assert_eq!(OutDtype::Native.size(DataType::UInt16), 2);
        assert_eq!(OutDtype::Native.max_size(), 8);
        assert_eq!(OutDtype::F16.max_size(), 2);
        assert_eq!(OutDtype::default(), OutDtype::F32);
    }

    #[test]
    fn native_is_identity_and_floats_accept_everything() {
        for d in DataType::ALL {
            assert_eq!(OutDtype::Native.cast(d), Cast::Identity);
            assert_eq!(OutDtype::Native.element(d), d);
            for out in [OutDtype::F32, OutDtype::Bf16, OutDtype::F16] {
                assert!(out.element(d).is_float());
            }
        }
        assert_eq!(OutDtype::F32.cast(DataType::Float32), Cast::Identity);
        assert_eq!(OutDtype::F32.cast(DataType::UInt16), Cast::Exact);
        assert_eq!(OutDtype::F32.cast(DataType::Int32), Cast::Rounded);
        assert_eq!(OutDtype::F16.cast(DataType::UInt64), Cast::Rounded);
        assert_eq!(OutDtype::Bf16.cast(DataType::Float16), Cast::Rounded);
        assert_eq!(OutDtype::Bf16.cast(DataType::UInt8), Cast::Exact);
        assert_eq!(OutDtype::F16.cast(DataType::UInt16), Cast::Rounded);
    }
}
