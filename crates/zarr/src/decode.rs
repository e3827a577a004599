//! CPU decode of one chunk through its whole codec chain.

use crate::dtype::{DataType, FillValue};

/// What a chunk decodes to: its shape (after all array→array codecs are undone, i.e. in
/// the array's axis order), element type and fill value (for nested sharding's empty
/// inner chunks).
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkRepr {
    pub shape: Vec<u64>,
    pub data_type: DataType,
    pub fill_value: FillValue,
}
