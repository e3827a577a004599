//! Metadata prefetching: `SlotCache` with stable handles, gates, fetchers and the prefetcher.
//! Being written; see DESIGN.md §2 "prefetch-cache".
