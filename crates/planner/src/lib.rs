//! The pure batch planner: chunk plans, fills, coalesced reads and waves.
//! Being written; see DESIGN.md §2 "planner".
#![forbid(unsafe_code)]
