//! CUDA backend tests: the missing-driver error (runs anywhere) and the toy pipeline on a
//! GPU (`_gpu`: run by `cargo xtask test-gpu`).

use super::toy::{ToyOptions, run_toy};
use crate::backend::cuda::{CudaBackend, driver_present};
use crate::error::Error;
use crate::sync::Arc;

#[test]
fn cuda_backend_reports_a_missing_driver_as_an_error() {
    let result = CudaBackend::new(0);
    if driver_present() {
        // A machine with a driver: the constructor either opens the device or names the failing call.
        assert!(!matches!(result, Err(Error::CudaLibraryMissing)));
    } else {
        assert_eq!(result.map(|_| ()), Err(Error::CudaLibraryMissing));
    }
}

#[test]
fn toy_pipeline_on_cuda_gpu() {
    let backend = Arc::new(CudaBackend::new(0).expect("a CUDA device (this test needs a GPU)"));
    for seed in 1..=4u64 {
        let opts = ToyOptions {
            iterations: 64,
            words: 1 << 20,
            max_delay_us: 500,
            seed,
            skip_acquire_wait: false,
            gate_first_copy: false,
        };
        let out = run_toy(Arc::clone(&backend), &opts).expect("toy pipeline runs");
        assert_eq!(out.depth, 2, "the H200 has 64-bit stream memory operations");
        assert_eq!(out.checked, 64, "seed {seed}");
        assert!(
            out.mismatches.is_empty(),
            "seed {seed}: {:?}",
            &out.mismatches[..out.mismatches.len().min(8)]
        );
        assert_eq!(out.report.first_error, None);
        assert!(out.report.findings.is_empty(), "{:?}", out.report.findings);
    }
}

#[test]
fn toy_pipeline_mutation_is_detected_on_cuda_gpu() {
    let backend = Arc::new(CudaBackend::new(0).expect("a CUDA device (this test needs a GPU)"));
    let opts = ToyOptions {
        iterations: 3,
        words: 1 << 16,
        max_delay_us: 0,
        seed: 1,
        skip_acquire_wait: true,
        gate_first_copy: true,
    };
    let out = run_toy(backend, &opts).expect("toy pipeline runs");
    assert_eq!(out.checked, 3);
    assert!(
        out.mismatches.iter().any(|&(i, _, found)| i == 0 && found == super::toy::pattern(2)),
        "the skipped wait must corrupt iteration 0 on the GPU too: {:?}",
        out.mismatches
    );
}
