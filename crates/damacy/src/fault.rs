//! Fault injection for the tests of the failure paths (not part of the API): a pipeline's
//! threads check for a fault at fixed points, and a test arms one for the next few times
//! its point is reached ([`crate::Pipeline::inject_fault`]). Nothing fires unless a test
//! armed it; a check of an unarmed fault is one relaxed atomic load.
//!
//! A programmatic switch rather than an environment variable: tests of one process run in
//! parallel, and each arms only its own pipeline.

use std::sync::atomic::{AtomicU64, Ordering};

/// A fault a test can inject, and where it fires.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// A wave's device work fails as a failed driver call would (the CUDA submit thread,
    /// once per wave it submits).
    WaveSubmit,
    /// The wait for a plan's ready event fails (the CUDA harvest thread, once per plan).
    BatchReady,
    /// After a device failure, the wait for the device's outstanding work fails too: the
    /// device counts as lost (the CUDA harvest thread, once per recovery).
    DeviceLost,
    /// The coordinator panics before handing a plan (of one batch or more) to the engine
    /// (once per plan).
    CoordinatorPanic,
    /// The feeder panics before moving a sample into the lookahead (once per sample).
    FeederPanic,
    /// The CUDA submit thread panics as it takes a plan (once per plan).
    SubmitPanic,
    /// The CUDA harvest thread panics at a plan's end (once per plan).
    HarvestPanic,
    /// The device decoder's result for a frame is reported failed: the frame is expected
    /// one byte longer than it decodes to, so the status reduction on the device flags it
    /// and the harvest thread reports it (the CUDA submit thread, once per frame, in the
    /// order of the wave's decode streams). Corrupting the frame itself is no fault to
    /// inject on a GPU: on the H200 nvCOMP reported nothing for a broken magic number, a
    /// halved length or a halved output capacity, and a frame whose last 40 bytes were
    /// flipped made it fault with an illegal address, which ends the CUDA context.
    DecodeFailure,
    /// The simulated device's decode calls meet in pairs: a call's payload, once running on
    /// its stream, waits until a second call's payload runs too (each armed time is one
    /// call). A call whose partner does not come within a minute fails, so a test proves
    /// that two waves decode at once (on two decode streams) by their batches succeeding.
    DecodeRendezvous,
    /// The preparer of each even batch waits, once it prepared it, until the next batch
    /// is prepared as well (each armed time is one prepared batch). So a later batch is
    /// ready for the engine first, and a test proves that batches still arrive in push
    /// order; with one preparer the wait gives up after a minute with a panic.
    PrepareOutOfOrder,
    /// A GPUDirect Storage read fails (the simulated device, once per read): the worker
    /// reads the chunk's read op through host memory instead.
    GdsRead,
}

/// Variants of [`Fault`].
const FAULTS: usize = 11;

/// The error code of an injected driver failure (`gpu_schedule::Error::CudaDriver`).
#[doc(hidden)]
pub const INJECTED: &str = "DAMACY_INJECTED_FAULT";

/// The armed faults of one pipeline: per fault, how many times its point passes before
/// it fires (high 32 bits), and how many more times it fires then (low 32 bits).
#[derive(Debug, Default)]
pub(crate) struct Faults([AtomicU64; FAULTS]);

impl Faults {
    /// Arms `fault` to fire the next `times` times its point is reached.
    pub(crate) fn arm(&self, fault: Fault, times: u32) {
        self.arm_after(fault, 0, times);
    }

    /// Arms `fault` to let its point pass `skip` times, then fire `times` times.
    pub(crate) fn arm_after(&self, fault: Fault, skip: u32, times: u32) {
        let armed = if times == 0 { 0 } else { (u64::from(skip) << 32) | u64::from(times) };
        self.0[fault as usize].store(armed, Ordering::SeqCst);
    }

    /// Whether `fault` fires here (each pass uses up a skip, or else one of its times).
    pub(crate) fn fire(&self, fault: Fault) -> bool {
        let n = &self.0[fault as usize];
        if n.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let step = |v: u64| match (v >> 32, v & u64::from(u32::MAX)) {
            (_, 0) => None,
            (0, times) => Some(times - 1),
            (skip, times) => Some(((skip - 1) << 32) | times),
        };
        match n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, step) {
            // Fired when no skip was left.
            Ok(before) => before >> 32 == 0,
            Err(_) => false,
        }
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
        assert_eq!(Fault::GdsRead as usize, FAULTS - 1, "FAULTS counts every variant");
        // Skips first, then fires, then is used up.
        f.arm_after(Fault::DecodeFailure, 3, 2);
        let seen: Vec<bool> = (0..7).map(|_| f.fire(Fault::DecodeFailure)).collect();
        assert_eq!(seen, [false, false, false, true, true, false, false]);
        f.arm_after(Fault::DecodeFailure, 5, 0);
        assert!(!f.fire(Fault::DecodeFailure), "armed zero times never fires");
    }
}
