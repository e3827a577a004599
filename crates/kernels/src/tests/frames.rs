//! The device frame check's host side on the machine without a GPU: the fault table, the
//! verdict layout against `kernels.cu`, and the host twin (`host::check_zstd_frames`:
//! `check_zstd_frame` over a batch laid out as the device sees it) on every corrupt case
//! and on the mutated frames the GPU tests feed the kernel (which reach every fault).

use std::collections::BTreeSet;

use super::frame_cases::{
    FrameCase, corpus_seeds, corrupt_cases, host_verdict, mutated, valid_frames,
};
use super::reference::Rng;
use crate::desc::{DeviceRange, FrameVerdict, ZstdBatch, ZstdFrames};
use crate::error::Error;
use crate::host;
use crate::zstd_frame::FrameFault;
use crate::{KERNELS_CU, check_zstd_frame};

fn range<T>(v: &[T]) -> DeviceRange {
    // SAFETY: a live host buffer, used only while `v` is borrowed by the caller.
    unsafe { DeviceRange::from_raw(v.as_ptr() as u64, std::mem::size_of_val(v) as u64) }
}

/// Runs the host twin over `cases` as one batch laid out as the device sees it (every
/// frame in one buffer, back to back), into poisoned verdicts.
pub(crate) fn twin_verdicts(cases: &[FrameCase]) -> Vec<FrameVerdict> {
    let mut packed = Vec::new();
    let mut offsets = Vec::with_capacity(cases.len());
    for c in cases {
        offsets.push(packed.len());
        packed.extend_from_slice(&c.frame);
    }
    let ptrs: Vec<u64> = offsets.iter().map(|&o| packed.as_ptr() as u64 + o as u64).collect();
    let sizes: Vec<u64> = cases.iter().map(|c| c.frame.len() as u64).collect();
    let expected: Vec<u64> = cases.iter().map(|c| c.expected).collect();
    let poison = FrameVerdict { code: 0xabab_abab, pad: 0xabab_abab, offset: !0, value: !0 };
    let mut verdicts = vec![poison; cases.len()];
    let frames = ZstdFrames {
        count: cases.len() as u32,
        comp_ptrs: range(&ptrs),
        comp_bytes: range(&sizes),
        expected: range(&expected),
    };
    // SAFETY: every pointer names a frame inside `packed`, alive for the call; the
    // verdicts are a host array of `count` entries.
    let out =
        unsafe { DeviceRange::from_raw(verdicts.as_mut_ptr() as u64, cases.len() as u64 * 24) };
    // SAFETY: as above.
    unsafe { host::check_zstd_frames(&frames, out) }.expect("twin");
    verdicts
}

/// Asserts that the twin's verdict of every case is the host check's, and returns the
/// codes seen.
fn assert_twin_is_the_check(cases: &[FrameCase]) -> BTreeSet<u32> {
    let got = twin_verdicts(cases);
    let mut seen = BTreeSet::new();
    for (c, v) in cases.iter().zip(&got) {
        let want = host_verdict(c);
        assert_eq!(*v, want, "{}: twin {v:?}, host check {want:?}", c.name);
        assert_eq!(v.result(), check_zstd_frame(&c.frame, c.expected), "{}", c.name);
        seen.insert(v.code);
    }
    seen
}

#[test]
fn fault_codes_and_reasons_round_trip() {
    let mut reasons = BTreeSet::new();
    for (i, f) in FrameFault::ALL.into_iter().enumerate() {
        assert_eq!(f.code(), i as u32 + 1, "{f:?}: codes are dense from 1");
        assert_eq!(FrameFault::from_code(f.code()), Some(f));
        assert_eq!(FrameFault::from_reason(f.reason()), Some(f));
        assert!(reasons.insert(f.reason()), "{f:?}: reason used twice");
        let v = FrameVerdict { code: f.code(), pad: 0, offset: 17, value: 99 };
        let e = f.error(17, 99);
        assert_eq!(v.result(), Err(e.clone()));
        assert_eq!(FrameVerdict::of_check(&Err(e)), Some(v));
    }
    assert_eq!(FrameFault::from_code(0), None);
    assert_eq!(FrameFault::from_code(14), None);
    assert_eq!(FrameFault::from_reason("no such reason"), None);
    assert_eq!(FrameVerdict::OK.result(), Ok(()));
    assert_eq!(FrameVerdict::of_check(&Ok(())), Some(FrameVerdict::OK));
    assert_eq!(FrameVerdict::of_check(&Err(Error::CudaFeatureDisabled)), None);
    // A code no fault has is a typed error, not a panic.
    let v = FrameVerdict { code: 0xabab_abab, pad: 0, offset: 0, value: 0 };
    assert_eq!(v.result(), Err(Error::FrameVerdictCode { code: 0xabab_abab }));
}

#[test]
fn the_cuda_source_defines_the_fault_codes_and_the_verdict_layout() {
    let names = [
        "MAGIC",
        "RESERVED_BIT",
        "WINDOW_LOG",
        "DICTIONARY",
        "NO_CONTENT_SIZE",
        "CONTENT_SIZE",
        "RESERVED_BLOCK_TYPE",
        "BLOCK_TOO_LARGE",
        "RAW_RLE_PAST_CONTENT",
        "BLOCK_PAST_END",
        "CHECKSUM_PAST_END",
        "TRAILING_BYTES",
        "HEADER_PAST_END",
    ];
    assert_eq!(names.len(), FrameFault::ALL.len());
    assert!(KERNELS_CU.contains("#define ZF_OK 0\n"));
    for (f, name) in FrameFault::ALL.into_iter().zip(names) {
        assert!(KERNELS_CU.contains(&format!("#define ZF_{name} {}\n", f.code())), "{name}");
    }
    assert_eq!(super::host::cuda_fields("FrameVerdict"), ["code", "pad", "offset", "value"]);
    assert_eq!(std::mem::size_of::<FrameVerdict>() as u64, FrameVerdict::BYTES);
    assert_eq!(std::mem::offset_of!(FrameVerdict, offset), 8);
    assert_eq!(std::mem::offset_of!(FrameVerdict, value), 16);
    let v = FrameVerdict { code: 6, pad: 0, offset: 0x0102, value: 0x0a0b };
    let bytes: Vec<u8> = bytemuck::bytes_of(&v).iter().chain(&[1, 2, 3]).copied().collect();
    assert_eq!(FrameVerdict::from_bytes(&bytes), vec![v]);
}

#[test]
fn host_twin_of_the_frame_check_agrees_on_valid_and_every_corrupt_case() {
    let mut rng = Rng::new(20);
    let valid = valid_frames(&mut rng);
    assert!(valid.len() > 30);
    for c in &valid {
        assert_eq!(check_zstd_frame(&c.frame, c.expected), Ok(()), "{}", c.name);
    }
    assert_eq!(assert_twin_is_the_check(&valid), BTreeSet::from([0]));
    let corrupt = corrupt_cases(&mut rng);
    let seen = assert_twin_is_the_check(&corrupt);
    // Every fault is among the corrupt cases, and the window case that passes.
    let all: BTreeSet<u32> = (0..=FrameFault::ALL.len() as u32).collect();
    assert_eq!(seen, all);
    let seeds = corpus_seeds();
    assert!(seeds.len() >= 9, "{} corpus seeds", seeds.len());
    assert_twin_is_the_check(&seeds);
}

#[test]
fn host_twin_of_the_frame_check_agrees_on_mutated_frames() {
    let cases: usize =
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let mut rng = Rng::new(21);
    let mut bases = valid_frames(&mut rng);
    bases.extend(
        corpus_seeds().into_iter().filter(|c| check_zstd_frame(&c.frame, c.expected).is_ok()),
    );
    let fuzzed = mutated(&mut rng, &bases, cases);
    let seen = assert_twin_is_the_check(&fuzzed);
    if cases >= 20_000 {
        // The mutations reach every fault and leave some frames valid.
        let all: BTreeSet<u32> = (0..=FrameFault::ALL.len() as u32).collect();
        assert_eq!(seen, all, "codes reached by {cases} mutations");
    }
}

#[test]
fn host_twin_of_the_frame_check_checks_its_arrays_first() {
    let frame = zstd::bulk::compress(&[1, 2, 3], 3).unwrap();
    let ptrs = [frame.as_ptr() as u64; 2];
    let sizes = [frame.len() as u64; 2];
    let expected = [3u64, 4];
    let mut verdicts = [FrameVerdict::OK; 2];
    let frames = ZstdFrames {
        count: 2,
        comp_ptrs: range(&ptrs),
        comp_bytes: range(&sizes),
        expected: range(&expected),
    };
    // SAFETY: host arrays alive for the calls; refused calls touch nothing.
    unsafe {
        let short = DeviceRange::from_raw(verdicts.as_mut_ptr() as u64, 47);
        assert!(matches!(
            host::check_zstd_frames(&frames, short),
            Err(Error::BufferTooSmall { what: "verdicts", needed: 48, len: 47, .. })
        ));
        let odd = DeviceRange::from_raw(verdicts.as_mut_ptr() as u64 + 4, 48);
        assert!(matches!(
            host::check_zstd_frames(&frames, odd),
            Err(Error::Misaligned { align: 8, .. })
        ));
        let three = ZstdFrames { count: 3, ..frames };
        let out = DeviceRange::from_raw(verdicts.as_mut_ptr() as u64, 48);
        assert!(matches!(
            host::check_zstd_frames(&three, out),
            Err(Error::BufferTooSmall { what: "compressed pointers", needed: 24, len: 16, .. })
        ));
        host::check_zstd_frames(&frames, out).unwrap();
    }
    assert_eq!(verdicts[0], FrameVerdict::OK);
    assert_eq!(verdicts[1].result(), check_zstd_frame(&frame, 4));
    assert_eq!(verdicts[1].code, FrameFault::ContentSize.code());
}

#[test]
fn frames_of_an_nvcomp_batch_expect_the_output_capacities() {
    let arr = [0u64; 4];
    let statuses = [0i32; 4];
    let batch = ZstdBatch {
        chunks: 4,
        max_chunk_bytes: 1,
        comp_ptrs: range(&arr),
        comp_bytes: range(&arr[1..]),
        out_capacity: range(&arr[2..]),
        out_ptrs: range(&arr),
        out_actual: range(&arr),
        statuses: range(&statuses),
    };
    let f = ZstdFrames::of_batch(&batch).unwrap();
    assert_eq!(f.count, 4);
    assert_eq!(
        (f.comp_ptrs, f.comp_bytes, f.expected),
        (batch.comp_ptrs, batch.comp_bytes, batch.out_capacity)
    );
    let huge = ZstdBatch { chunks: u32::MAX as usize + 1, ..batch };
    assert!(matches!(ZstdFrames::of_batch(&huge), Err(Error::Overflow { .. })));
}
