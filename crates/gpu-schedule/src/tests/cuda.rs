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

/// The ranged copies the CUDA engine stages through: pinned → device at offsets,
/// device → pinned, pageable upload and synchronous download, with events ordering them;
/// every byte checked, and ranges outside a buffer refused before any driver call.
#[test]
fn ranged_copies_round_trip_and_reject_out_of_range_gpu() {
    use crate::backend::Backend;
    let b = CudaBackend::new(0).expect("a CUDA device (this test needs a GPU)");
    let s = b.create_stream("copies").expect("stream");
    let pinned = b.alloc_pinned(4096).expect("pinned");
    let dev = b.alloc_device(8192).expect("device");
    let back = b.alloc_pinned(4096).expect("pinned");
    let pattern: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
    b.write_pinned(&pinned, |p| p.copy_from_slice(&pattern));
    b.copy_range_to_device(&s, &dev, 1000, &pinned, 96, 3000).expect("h2d");
    b.upload(&s, &dev, 5000, &pattern[..100]).expect("upload");
    b.copy_range_to_pinned(&s, &back, 10, &dev, 1000, 3000).expect("d2h");
    let done = b.create_event().expect("event");
    done.record(&s).expect("record");
    done.synchronize().expect("sync");
    assert_ne!(done.raw(), 0);
    b.read_pinned(&back, |v| assert_eq!(&v[10..3010], &pattern[96..3096]));
    let mut host = vec![0u8; 100];
    b.download(&mut host, &dev, 5000).expect("download");
    assert_eq!(host, &pattern[..100]);
    let too_far = b.copy_range_to_device(&s, &dev, 8000, &pinned, 0, 200);
    assert!(matches!(too_far, Err(Error::BufferTooSmall { needed: 8200, len: 8192, .. })));
    let too_far = b.download(&mut host, &dev, 8100);
    assert!(matches!(too_far, Err(Error::BufferTooSmall { needed: 8200, len: 8192, .. })));
    let (free, total) = b.memory_info().expect("memory info");
    assert!(free > 0 && free <= total);
}
