//! NVTX ranges around stages and moves, behind the `nvtx` feature (a no-op without it).

/// An open range; it ends when dropped.
#[derive(Debug)]
pub struct Range {
    #[cfg(feature = "nvtx")]
    _guard: NvtxGuard,
}

#[cfg(feature = "nvtx")]
struct NvtxGuard {
    _range: nvtx::RangeGuard,
}

#[cfg(feature = "nvtx")]
impl std::fmt::Debug for NvtxGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NvtxGuard")
    }
}

/// Opens a range named `name` (and `slot`, where there is one).
pub fn range(name: &str, slot: Option<usize>) -> Range {
    #[cfg(feature = "nvtx")]
    {
        let guard = match slot {
            Some(s) => nvtx::range!("{name} [slot {s}]"),
            None => nvtx::range!("{name}"),
        };
        Range { _guard: NvtxGuard { _range: guard } }
    }
    #[cfg(not(feature = "nvtx"))]
    {
        let _ = (name, slot);
        Range {}
    }
}
