//! Byte sources: the `Store` trait, `FsStore` (I/O thread pool, fd cache) and `LatencyStore`.
//! Being written; see DESIGN.md §2 "store".
