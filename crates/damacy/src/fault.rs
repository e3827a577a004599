//! Fault injection for the tests of the failure paths (not part of the API): a pipeline's
//! threads check for a fault at fixed points, and a test arms one for the next few times
//! its point is reached ([`crate::Pipeline::inject_fault`]). Nothing fires unless a test
//! armed it; a check of an unarmed fault is one relaxed atomic load.
//!
//! A programmatic switch rather than an environment variable: tests of one process run in
//! parallel, and each arms only its own pipeline.

use std::sync::atomic::{AtomicU32, Ordering};

/// A fault a test can inject, and where it fires.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// A wave's device work fails as a failed driver call would (the CUDA submit thread,
    /// once per wave it submits).
    WaveSubmit,
    /// The wait for a batch's ready event fails (the CUDA harvest thread, once per batch).
    BatchReady,
    /// After a device failure, the wait for the device's outstanding work fails too: the
    /// device counts as lost (the CUDA harvest thread, once per recovery).
    DeviceLost,
    /// The coordinator panics before handing a batch to the engine (once per batch).
    CoordinatorPanic,
    /// The feeder panics before moving a sample into the lookahead (once per sample).
    FeederPanic,
    /// The CUDA submit thread panics as it takes a planned batch (once per batch).
    SubmitPanic,
    /// The CUDA harvest thread panics at a batch's end (once per batch).
    HarvestPanic,
}

/// Variants of [`Fault`].
const FAULTS: usize = 7;

/// The error code of an injected driver failure (`gpu_schedule::Error::CudaDriver`).
#[doc(hidden)]
pub const INJECTED: &str = "DAMACY_INJECTED_FAULT";

/// The armed faults of one pipeline: how many more times each fires.
#[derive(Debug, Default)]
pub(crate) struct Faults([AtomicU32; FAULTS]);

impl Faults {
    /// Arms `fault` to fire the next `times` times its point is reached.
    pub(crate) fn arm(&self, fault: Fault, times: u32) {
        self.0[fault as usize].store(times, Ordering::SeqCst);
    }

    /// Whether `fault` fires here (each firing uses up one of its armed times).
    pub(crate) fn fire(&self, fault: Fault) -> bool {
        let n = &self.0[fault as usize];
        n.load(Ordering::Relaxed) > 0
            && n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1)).is_ok()
    }

    /// Panics with a message naming `fault` when it fires.
    pub(crate) fn panic_point(&self, fault: Fault) {
        if self.fire(fault) {
            panic!("injected fault {fault:?}");
        }
    }

    /// A failure of driver call `call` when `fault` fires.
    ///
    /// # Errors
    /// `CudaDriver` with code [`INJECTED`] when it fires.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(crate) fn driver(&self, fault: Fault, call: &'static str) -> gpu_schedule::Result<()> {
        if self.fire(fault) {
            return Err(gpu_schedule::Error::CudaDriver { call, code: INJECTED.into() });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{FAULTS, Fault, Faults, INJECTED};

    #[test]
    fn an_armed_fault_fires_as_often_as_armed_and_no_other_fires() {
        let f = Faults::default();
        assert!(!f.fire(Fault::WaveSubmit), "unarmed");
        f.arm(Fault::WaveSubmit, 2);
        assert!(!f.fire(Fault::BatchReady), "another fault");
        assert!(f.fire(Fault::WaveSubmit));
        let e = f.driver(Fault::WaveSubmit, "cuEventRecord").expect_err("second firing");
        assert_eq!(
            e,
            gpu_schedule::Error::CudaDriver { call: "cuEventRecord", code: INJECTED.into() }
        );
        assert!(!f.fire(Fault::WaveSubmit), "used up");
        assert_eq!(Fault::HarvestPanic as usize, FAULTS - 1, "FAULTS counts every variant");
    }
}
