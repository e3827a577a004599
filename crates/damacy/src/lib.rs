//! damacy: stream fixed-shape crops from many sharded zarr v3 arrays as batches of tensors.
//! Not yet written; see DESIGN.md §1.
