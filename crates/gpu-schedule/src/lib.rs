//! Streams, events, declared ordering edges, generation-carried pools and the scheduler.
//! Being written; see DESIGN.md §2 "gpu-schedule".
