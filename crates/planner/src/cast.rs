//! Output element types and the rule for which source data types reach them.
//!
//! The rule: every zarr data type can be delivered as `F32`, `Bf16` or `F16`; `Native`
//! delivers the source type unchanged and therefore needs every sample of a batch to share
//! one data type. A cast is [`Cast::Exact`] when every source value is representable in the
//! output and [`Cast::Rounded`] otherwise (round to nearest even, overflow to ±infinity,
//! NaN stays NaN; `bool` is 0 or 1). "No cast path" arises only for `Native` across mixed
//! data types.

use zarr::DataType;

/// The element type requested for a batch's output tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutDtype {
    F32,
    Bf16,
    F16,
    /// The source data type, unchanged.
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

#[cfg(test)]
mod tests {
    use super::*;

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
