//! Batch semantics, back-pressure, teardown and the error policy.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use damacy::fault::Fault;
use damacy::{Config, Error, OnError, OutDtype, Pipeline, Sample, SampleError};

use crate::support::{copy_dir, fixtures, npy_native, sub_box};

fn fixture(name: &str) -> PathBuf {
    fixtures().into_iter().find(|f| f.name == name).expect(name).path
}

/// The whole-array reference of fixture `name` (its crop 0) as native bytes.
fn reference(name: &str) -> (Vec<u64>, Vec<u8>) {
    let f = fixtures().into_iter().find(|f| f.name == name).expect(name);
    let (_, shape, data) = npy_native(&f.crops[0].npy);
    (shape, data)
}

/// `n` distinct 4×4×4 boxes of the 20×33×17 fixtures, along axis 1.
fn boxes(path: &Path, n: u64) -> Vec<Sample> {
    (0..n).map(|i| Sample::new(path, vec![1, i % 29, 3], vec![5, i % 29 + 4, 7]).unwrap()).collect()
}

/// One batch preparer unless a test asks for more: the order of events these tests pin
/// (which batch a coordinator panic hits, say) must not depend on the machine's cores
/// (`prepare_threads` 0 is a quarter of them).
fn cfg(spb: usize) -> damacy::ConfigBuilder {
    Config::builder()
        .sample_shape([4, 4, 4])
        .samples_per_batch(spb)
        .dtype(OutDtype::Native)
        .decode_threads(2)
        .prepare_threads(1)
}

fn expect_sample(batch: &damacy::Batch, k: usize, full: &(Vec<u64>, Vec<u8>)) {
    let s = &batch.samples()[k];
    let want = sub_box(&full.1, &full.0, 2, &s.aabb.lo, &s.aabb.hi);
    let per = 64 * 2;
    assert_eq!(
        &batch.data().unwrap()[k * per..(k + 1) * per],
        &want[..],
        "sample {k} ({:?})",
        s.aabb
    );
}

#[test]
fn batches_come_in_push_order_with_indices_and_a_partial_last_batch() {
    let path = fixture("shard_end_u16_zstd");
    let full = reference("shard_end_u16_zstd");
    let mut p = Pipeline::new(cfg(3).build().unwrap()).unwrap();
    p.push(boxes(&path, 7)).unwrap();
    p.finish();
    let mut seen = Vec::new();
    while let Some(b) = p.pop().unwrap() {
        assert_eq!(b.id(), seen.len() as u64 / 3);
        for k in 0..b.samples().len() {
            expect_sample(&b, k, &full);
            seen.push(b.samples()[k].index);
        }
        if b.id() == 2 {
            assert_eq!(b.shape(), &[1, 4, 4, 4]);
        } else {
            assert_eq!(b.shape(), &[3, 4, 4, 4]);
        }
    }
    assert_eq!(seen, (0..7).collect::<Vec<u64>>());
}

#[test]
fn try_push_takes_what_the_lookahead_holds_and_returns_the_rest() {
    let path = fixture("zstd_u16");
    // lookahead 4: the queue takes at most 4 samples before the coordinator drains it.
    let mut p = Pipeline::new(cfg(4).lookahead(4).batches_in_flight(1).build().unwrap()).unwrap();
    let rest: Vec<Sample> = p.try_push(boxes(&path, 40)).unwrap().collect();
    assert!(rest.len() >= 36 - 8, "at most lookahead plus what was drained: {} left", rest.len());
    assert!(!rest.is_empty());
    // The rest is exactly the tail of the input, in order.
    let all = boxes(&path, 40);
    assert_eq!(&all[40 - rest.len()..], &rest[..]);
}

#[test]
fn held_batches_keep_their_own_data_and_release_from_another_thread_works() {
    let path = fixture("shard_end_u16_zstd");
    let full = reference("shard_end_u16_zstd");
    let mut p = Pipeline::new(cfg(2).batches_in_flight(2).build().unwrap()).unwrap();
    p.push(boxes(&path, 12)).unwrap();
    p.finish();
    let b0 = p.pop().unwrap().unwrap();
    let b1 = p.pop().unwrap().unwrap();
    // Both held at once: distinct buffers, each with its own samples.
    assert_ne!(b0.data().unwrap().as_ptr(), b1.data().unwrap().as_ptr());
    for k in 0..2 {
        expect_sample(&b0, k, &full);
        expect_sample(&b1, k, &full);
    }
    // With two buffers, batch 2 needs b0's buffer: release it from another thread.
    std::thread::spawn(move || drop(b0)).join().unwrap();
    let b2 = p.pop().unwrap().unwrap();
    expect_sample(&b2, 0, &full);
    expect_sample(&b1, 1, &full); // b1 untouched by b2
    drop((b1, b2));
    let mut rest = 0;
    while let Some(b) = p.pop().unwrap() {
        expect_sample(&b, 0, &full);
        rest += 1;
    }
    assert_eq!(rest, 3);
}

#[test]
fn dropping_a_pipeline_mid_flight_returns_and_joins() {
    let path = fixture("zstd_u16");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut p = Pipeline::new(cfg(4).batches_in_flight(2).build().unwrap()).unwrap();
        // An endless source: the pipeline must stop pulling from it on drop.
        let endless = (0u64..)
            .map(move |i| Sample::new(&path, vec![1, i % 29, 3], vec![5, i % 29 + 4, 7]).unwrap());
        p.push(endless).unwrap();
        let held = p.pop().unwrap().unwrap();
        drop(p);
        // A batch outliving its pipeline stays readable.
        tx.send(held.data().unwrap().len()).unwrap();
    });
    // Generous: a hang is the failure this test exists to catch.
    assert_eq!(rx.recv_timeout(Duration::from_secs(60)).unwrap(), 4 * 64 * 2);
}

#[test]
fn pop_timeout_reports_timeout_without_losing_the_batch() {
    let path = fixture("zstd_u16");
    let mut p = Pipeline::new(cfg(2).build().unwrap()).unwrap();
    let e = p.pop_timeout(Duration::from_millis(20)).unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e}");
    p.push(boxes(&path, 2)).unwrap();
    let b = p.pop_timeout(Duration::from_secs(60)).unwrap().unwrap();
    assert_eq!(b.samples().len(), 2);
}

/// Runs a 3-batch pipeline whose middle batch holds `bad`; returns the three results.
fn with_bad_sample(bad: Sample, on_error: OnError) -> Vec<damacy::Result<damacy::Batch>> {
    let good = fixture("shard_end_u16_zstd");
    let mut p =
        Pipeline::new(cfg(2).on_error(on_error).batches_in_flight(3).build().unwrap()).unwrap();
    let mut samples = boxes(&good, 6);
    samples[3] = bad;
    p.push(samples).unwrap();
    p.finish();
    let out: Vec<_> = (0..3).map(|_| p.pop().map(|b| b.expect("a batch"))).collect();
    assert!(p.pop().unwrap().is_none());
    out
}

fn assert_fails_then_continues(bad: Sample, check: impl Fn(&SampleError) -> bool) {
    let uri = bad.uri().to_path_buf();
    let r = with_bad_sample(bad, OnError::Fail);
    assert!(r[0].is_ok() && r[2].is_ok(), "neighbouring batches still arrive");
    match &r[1] {
        Err(Error::Sample { index: 3, uri: u, source }) if *u == uri => {
            assert!(check(source), "unexpected error kind: {source}");
        }
        other => panic!("expected a sample error for index 3, got {other:?}"),
    }
}

#[test]
fn missing_array_is_a_sample_error_naming_uri_and_index() {
    let bad = Sample::new("/nonexistent/array.zarr", vec![0, 0, 0], vec![4, 4, 4]).unwrap();
    assert_fails_then_continues(bad, |e| matches!(e, SampleError::ArrayNotFound { .. }));
}

#[test]
fn out_of_bounds_box_is_a_sample_error() {
    let bad = Sample::new(fixture("zstd_u16"), vec![18, 0, 0], vec![22, 4, 4]).unwrap();
    assert_fails_then_continues(bad, |e| {
        matches!(e, SampleError::Format(zarr::Error::OutOfBounds { axis: 0, .. }))
    });
}

#[test]
fn corrupt_chunk_is_a_decode_error_naming_the_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let arr = dir.path().join("a");
    copy_dir(&fixture("zstd_u16"), &arr);
    // Chunk (0,0,0) holds the box below; overwrite its zstd frame's middle.
    let chunk = arr.join("c/0/0/0");
    let mut bytes = std::fs::read(&chunk).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[4..mid] {
        *b = 0xff;
    }
    std::fs::write(&chunk, bytes).unwrap();
    let bad = Sample::new(&arr, vec![0, 0, 0], vec![4, 4, 4]).unwrap();
    assert_fails_then_continues(
        bad,
        |e| matches!(e, SampleError::Decode { chunk, .. } if chunk == &vec![0, 0, 0]),
    );
}

#[test]
fn corrupt_shard_index_is_a_metadata_error() {
    let dir = tempfile::tempdir().unwrap();
    let arr = dir.path().join("a");
    copy_dir(&fixture("shard_end_u16_zstd"), &arr);
    let shard = arr.join("c/0/0/0");
    let mut bytes = std::fs::read(&shard).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 0x5a; // inside the index: the CRC no longer matches
    std::fs::write(&shard, bytes).unwrap();
    let bad = Sample::new(&arr, vec![0, 0, 0], vec![4, 4, 4]).unwrap();
    assert_fails_then_continues(bad, |e| {
        matches!(e, SampleError::Metadata { source: zarr::Error::IndexChecksum { .. }, .. })
    });
}

#[test]
fn unsupported_codec_is_a_metadata_error() {
    let dir = tempfile::tempdir().unwrap();
    let arr = dir.path().join("a");
    copy_dir(&fixture("zstd_u16"), &arr);
    let meta = std::fs::read_to_string(arr.join("zarr.json")).unwrap();
    std::fs::write(arr.join("zarr.json"), meta.replace("\"zstd\"", "\"zfp\"")).unwrap();
    let bad = Sample::new(&arr, vec![0, 0, 0], vec![4, 4, 4]).unwrap();
    assert_fails_then_continues(
        bad,
        |e| matches!(e, SampleError::Metadata { source: zarr::Error::Unsupported { codec }, .. } if codec == "zfp"),
    );
}

#[test]
fn wrong_sample_shape_fails_its_batch() {
    let bad = Sample::new(fixture("zstd_u16"), vec![0, 0, 0], vec![4, 4, 5]).unwrap();
    let r = with_bad_sample(bad, OnError::Fill);
    assert!(matches!(&r[1], Err(Error::SampleShape { index: 3, .. })), "{:?}", r[1]);
    assert!(r[2].is_ok());
}

#[test]
fn on_error_fill_fills_the_sample_and_lists_it() {
    let dir = tempfile::tempdir().unwrap();
    let arr = dir.path().join("a");
    copy_dir(&fixture("shard_empty_inner_i32_fill"), &arr);
    // Corrupt every stored inner chunk of shard (0,0) (everything before its 4-entry
    // index and checksum at the end) so any read of it fails to decode.
    let shard = arr.join("c/0/0");
    let mut bytes = std::fs::read(&shard).unwrap();
    let data_end = bytes.len() - (4 * 16 + 4);
    for b in &mut bytes[..data_end] {
        *b ^= 0xff;
    }
    std::fs::write(&shard, bytes).unwrap();
    let cfg = Config::builder()
        .sample_shape([16, 16])
        .samples_per_batch(2)
        .dtype(OutDtype::Native)
        .on_error(OnError::Fill)
        .build()
        .unwrap();
    let mut p = Pipeline::new(cfg).unwrap();
    let missing = Sample::new("/nonexistent.zarr", vec![0, 0], vec![16, 16]).unwrap();
    // The whole shard (0,0): every stored inner chunk is read.
    let corrupt = Sample::new(&arr, vec![0, 0], vec![16, 16]).unwrap();
    p.push([corrupt, missing]).unwrap();
    p.finish();
    let b = p.pop().unwrap().unwrap();
    let idx: Vec<u64> = b.errors().iter().map(|(i, _)| *i).collect();
    assert_eq!(idx, vec![0, 1]);
    let vals: Vec<i32> = bytemuck::cast_slice::<u8, i32>(b.data().unwrap()).to_vec();
    // The corrupt sample gets its array's fill value (-7); the missing array, zeros.
    assert!(vals[..256].iter().all(|&v| v == -7), "{:?}", &vals[..256]);
    assert!(vals[256..].iter().all(|&v| v == 0), "{:?}", &vals[256..]);
}

#[test]
fn stats_count_delivered_voxels_and_reads() {
    let path = fixture("shard_end_u16_zstd");
    let mut p = Pipeline::new(cfg(4).build().unwrap()).unwrap();
    p.push(boxes(&path, 8)).unwrap();
    p.finish();
    while p.pop().unwrap().is_some() {}
    let s = p.stats();
    assert_eq!(s.batches, 2);
    assert_eq!(s.samples, 8);
    assert_eq!(s.voxels_delivered, 8 * 64);
    assert_eq!(s.source_bytes_delivered, 8 * 64 * 2);
    assert_eq!(s.bytes_delivered, 8 * 64 * 2);
    assert!(s.bytes_read > 0 && s.reads_issued > 0 && s.chunks_decoded > 0);
    assert!(s.decode_amplification() >= 1.0);
    p.reset_stats();
    assert_eq!(p.stats().batches, 0);
}

/// Review finding: with `lookahead == samples_per_batch` the feeder could miss the take
/// that made room in the ring and both threads waited forever.
#[test]
fn feeder_never_misses_the_take_that_frees_the_ring() {
    let path = fixture("zstd_u16");
    let cfg = Config::builder()
        .sample_shape([1, 1, 1])
        .samples_per_batch(1)
        .lookahead(1)
        .dtype(OutDtype::Native)
        .decode_threads(1)
        .build()
        .unwrap();
    let mut p = Pipeline::new(cfg).unwrap();
    let n = 3000u64;
    p.push((0..n).map(move |i| {
        let lo = vec![i % 20, i % 33, i % 17];
        let hi = lo.iter().map(|v| v + 1).collect();
        Sample::new(&path, lo, hi).unwrap()
    }))
    .unwrap();
    p.finish();
    let mut got = 0;
    // Generous: a stall is the failure this test exists to catch.
    while let Some(b) = p.pop_timeout(Duration::from_secs(60)).unwrap() {
        assert_eq!(b.samples()[0].index, got);
        got += 1;
    }
    assert_eq!(got, n);
}

/// Review finding: holding one old batch must not stall the pipeline while other
/// buffers are free.
#[test]
fn holding_one_old_batch_does_not_stall_the_others() {
    let path = fixture("zstd_u16");
    let mut p = Pipeline::new(cfg(1).batches_in_flight(3).build().unwrap()).unwrap();
    p.push(boxes(&path, 10)).unwrap();
    p.finish();
    let kept = p.pop().unwrap().unwrap();
    let mut rest = 0;
    while let Some(b) = p.pop_timeout(Duration::from_secs(60)).unwrap() {
        assert_ne!(b.data().unwrap().as_ptr(), kept.data().unwrap().as_ptr());
        rest += 1;
    }
    assert_eq!(rest, 9);
    assert_eq!(kept.samples()[0].index, 0);
}

/// Review finding: a panicking sample iterator must end the stream with an error, after
/// the batches before it, instead of leaving `pop` waiting forever.
#[test]
fn a_panicking_sample_iterator_is_reported_after_the_batches_before_it() {
    let path = fixture("zstd_u16");
    let mut p = Pipeline::new(cfg(2).build().unwrap()).unwrap();
    let good = boxes(&path, 4);
    p.push(good.into_iter().chain(std::iter::from_fn(|| -> Option<Sample> {
        panic!("the caller's generator failed")
    })))
    .unwrap();
    p.finish();
    assert_eq!(p.pop_timeout(Duration::from_secs(60)).unwrap().unwrap().samples().len(), 2);
    assert_eq!(p.pop_timeout(Duration::from_secs(60)).unwrap().unwrap().samples().len(), 2);
    let e = p.pop_timeout(Duration::from_secs(60)).unwrap_err();
    assert!(matches!(e, Error::SourcePanicked { index: 4 }), "{e}");
    assert!(p.pop().unwrap().is_none());
}

/// Issue 14: a panic in the coordinator or the feeder ends the stream with an error that
/// names the thread and the panic, at this and every later `pop` (never `Ok(None)`, which
/// would end an epoch early, nor a hang); dropping the pipeline afterwards returns.
#[test]
fn a_panicking_pipeline_thread_is_an_error_at_every_later_pop() {
    let path = fixture("zstd_u16");
    for (fault, thread) in
        [(Fault::CoordinatorPanic, "damacy-coordinator"), (Fault::FeederPanic, "damacy-feeder")]
    {
        let samples = boxes(&path, 4);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut p = Pipeline::new(cfg(2).build().unwrap()).unwrap();
            p.inject_fault(fault, 1);
            p.push(samples).unwrap();
            p.finish();
            let pops: Vec<String> = (0..3)
                .map(|_| match p.pop_timeout(Duration::from_secs(60)) {
                    Err(Error::EnginePanicked { thread, message }) => {
                        format!("{thread}: {message}")
                    }
                    other => format!("{:?}", other.map(|b| b.map(|b| b.samples().len()))),
                })
                .collect();
            drop(p);
            tx.send(pops).unwrap();
        });
        // Generous: a hang (of pop or of the drop) is a failure this test exists to catch.
        let pops = rx.recv_timeout(Duration::from_secs(120)).expect("pop or drop hung");
        let want = format!("{thread}: injected fault {fault:?}");
        assert_eq!(pops, vec![want.clone(), want.clone(), want], "{fault:?}");
    }
}

/// Issue 18: batches prepared on several threads, each later batch ready before the one
/// before it (`PrepareOutOfOrder`: the preparer of an even batch holds it until the next
/// batch is prepared, which one preparer could never do), still reach the caller in push
/// order, whole and with the right data.
#[test]
fn batches_prepared_out_of_order_come_in_push_order() {
    let path = fixture("shard_end_u16_zstd");
    let full = reference("shard_end_u16_zstd");
    for preparers in [2, 4] {
        let mut p = Pipeline::new(cfg(3).prepare_threads(preparers).build().unwrap()).unwrap();
        assert_eq!(p.stats().prepare_threads, preparers as u64);
        p.inject_fault(Fault::PrepareOutOfOrder, u32::MAX);
        p.push(boxes(&path, 24)).unwrap();
        p.finish();
        let mut seen = Vec::new();
        while let Some(b) = p.pop_timeout(Duration::from_secs(120)).unwrap() {
            assert_eq!(b.id(), seen.len() as u64 / 3, "{preparers} preparers");
            for k in 0..b.samples().len() {
                expect_sample(&b, k, &full);
                seen.push(b.samples()[k].index);
            }
        }
        assert_eq!(seen, (0..24).collect::<Vec<u64>>(), "{preparers} preparers");
    }
}

/// Issue 18: with four preparers, a panic while one of them holds a batch ends the stream
/// after exactly the batches before that one (in order, none lost in between), then the
/// panic at every later `pop`; dropping the pipeline returns.
#[test]
fn a_preparer_panic_ends_the_stream_after_the_batches_before_it() {
    let path = fixture("shard_end_u16_zstd");
    let full = reference("shard_end_u16_zstd");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // One batch a plan: the fault fires once per plan.
        let c = cfg(2).prepare_threads(4).batches_per_plan(1).build().unwrap();
        let mut p = Pipeline::new(c).unwrap();
        p.inject_fault_after(Fault::CoordinatorPanic, 5, 1);
        p.push(boxes(&path, 32)).unwrap();
        p.finish();
        let mut ids = Vec::new();
        let errors: Vec<String> = loop {
            match p.pop_timeout(Duration::from_secs(60)) {
                Ok(Some(b)) => {
                    for k in 0..b.samples().len() {
                        expect_sample(&b, k, &full);
                    }
                    ids.push(b.id());
                }
                Ok(None) => break vec!["Ok(None): the stream ended short silently".into()],
                Err(e) => {
                    let later = (0..2).map(|_| format!("{:?}", p.pop().map(|b| b.is_some())));
                    break std::iter::once(e.to_string()).chain(later).collect();
                }
            }
        };
        drop(p);
        tx.send((ids, errors)).unwrap();
    });
    let (ids, errors) = rx.recv_timeout(Duration::from_secs(120)).expect("pop or drop hung");
    // The sixth batch prepared panicked; the four preparers had taken at most nine.
    assert!((0..=8).contains(&ids.len()), "{ids:?}");
    assert_eq!(ids, (0..ids.len() as u64).collect::<Vec<_>>(), "in order, none skipped");
    assert!(errors[0].contains("damacy-coordinator"), "{errors:?}");
    assert!(errors[0].contains("injected fault CoordinatorPanic"), "{errors:?}");
    for e in &errors[1..] {
        assert!(e.contains("EnginePanicked"), "{errors:?}");
    }
}

/// Review finding: a blocking sample iterator must not hold the input lock, so `finish`
/// and `try_push` return while it blocks.
#[test]
fn a_blocking_sample_iterator_does_not_block_finish() {
    let path = fixture("zstd_u16");
    let mut p = Pipeline::new(cfg(1).build().unwrap()).unwrap();
    let (tx, rx) = mpsc::channel::<Sample>();
    p.push(rx).unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        // The feeder is now blocked inside `rx.next()`.
        std::thread::sleep(Duration::from_millis(50));
        p.finish();
        done_tx.send(()).unwrap();
        p
    });
    assert!(done_rx.recv_timeout(Duration::from_secs(60)).is_ok(), "finish blocked");
    tx.send(boxes(&path, 1).remove(0)).unwrap();
    drop(tx);
    let mut p = handle.join().unwrap();
    assert_eq!(p.pop_timeout(Duration::from_secs(60)).unwrap().unwrap().samples().len(), 1);
    assert!(p.pop().unwrap().is_none());
}

#[test]
fn invalid_samples_are_refused_at_construction() {
    let e = Sample::new("/a.zarr", vec![5, 5], vec![1, 9]).unwrap_err();
    assert!(matches!(e, Error::InvalidSample { .. }), "{e}");
    let e = Sample::new("/a.zarr", vec![0], vec![1, 2]).unwrap_err();
    assert!(matches!(e, Error::InvalidSample { .. }), "{e}");
    use std::os::unix::ffi::OsStrExt;
    let bad = std::ffi::OsStr::from_bytes(b"/tmp/arr\xff.zarr");
    let e = Sample::new(bad, vec![0], vec![1]).unwrap_err();
    assert!(
        matches!(&e, Error::InvalidSample { source, .. } if matches!(**source, SampleError::NonUtf8Path)),
        "{e}"
    );
}

/// Review finding: metadata claiming 2^120 chunks per shard panicked inside the
/// prefetcher's driver, so `pop` and even dropping the pipeline hung. It must be a sample
/// error naming the array, and the pipeline must carry on.
#[test]
fn absurd_chunk_counts_are_a_sample_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let arr = dir.path().join("huge.zarr");
    std::fs::create_dir_all(&arr).unwrap();
    let big = 1u64 << 40;
    let meta = serde_json::json!({
        "zarr_format": 3, "node_type": "array", "shape": [big, big, big], "data_type": "uint8",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [big, big, big]}},
        "chunk_key_encoding": {"name": "default"}, "fill_value": 0,
        "codecs": [{"name": "sharding_indexed", "configuration": {
            "chunk_shape": [1, 1, 1], "codecs": [{"name": "bytes"}],
            "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}],
            "index_location": "end"}}]
    });
    std::fs::write(arr.join("zarr.json"), meta.to_string()).unwrap();
    let (tx, rx) = mpsc::channel();
    let good = fixture("zstd_u16");
    std::thread::spawn(move || {
        let mut p = Pipeline::new(cfg(1).build().unwrap()).unwrap();
        let bad = Sample::new(&arr, vec![1, 1, 1], vec![5, 5, 5]).unwrap();
        p.push(vec![bad, boxes(&good, 1).remove(0)]).unwrap();
        p.finish();
        let first = p.pop_timeout(Duration::from_secs(30)).map(|b| b.map(|b| b.id()));
        let second =
            p.pop_timeout(Duration::from_secs(30)).map(|b| b.map(|b| b.samples()[0].index));
        drop(p);
        tx.send((format!("{first:?}"), second.ok().flatten())).unwrap();
    });
    let (first, second) = rx.recv_timeout(Duration::from_secs(60)).expect("pop or drop hung");
    assert!(first.contains("Overflow") && first.contains("huge.zarr"), "{first}");
    assert_eq!(second, Some(1));
}

#[test]
fn backend_says_which_engine_runs_and_auto_falls_back_only_without_cuda() {
    let host = Pipeline::new(cfg(1).backend(damacy::Backend::Host).build().unwrap()).unwrap();
    assert_eq!(host.backend(), damacy::Running::Host);
    assert_eq!(host.backend().to_string(), "host engine");
    let cuda = Pipeline::new(cfg(1).backend(damacy::Backend::Cuda { device: 0 }).build().unwrap());
    if cfg!(feature = "cuda") {
        // The GPU suite runs this on a GPU host; without a device the reason is typed.
        match cuda {
            Ok(p) => assert!(matches!(p.backend(), damacy::Running::Cuda { device: 0, .. })),
            Err(Error::BackendUnavailable { reason }) => assert!(reason.allows_fallback()),
            Err(e) => panic!("unexpected {e}"),
        }
    } else {
        let Err(Error::BackendUnavailable { reason }) = cuda else {
            panic!("Backend::Cuda must fail in a build without the cuda feature")
        };
        assert_eq!(reason, damacy::Unavailable::NotBuilt);
        let auto = Pipeline::new(cfg(1).build().unwrap()).unwrap();
        assert_eq!(
            auto.backend(),
            damacy::Running::HostFallback { reason: damacy::Unavailable::NotBuilt }
        );
        assert!(auto.backend().to_string().contains("no CUDA engine"), "{}", auto.backend());
    }
}

/// A copy of `shard_end_u16_zstd` whose shard `c/0/0/0` lists inner chunk 0 as stored
/// with zero bytes (a corrupt index the planner refuses), and the fixture's reference.
fn zero_length_chunk_copy(dir: &Path) -> PathBuf {
    let arr = dir.join("a");
    copy_dir(&fixture("shard_end_u16_zstd"), &arr);
    let meta = zarr::ArrayMetadata::parse(&std::fs::read(arr.join("zarr.json")).unwrap()).unwrap();
    let zarr::ArrayToBytes::Sharding(codec) = &meta.codecs.array_to_bytes else {
        panic!("the fixture is sharded")
    };
    let shard_path = arr.join("c/0/0/0");
    let mut shard = std::fs::read(&shard_path).unwrap();
    let n = 8; // 16³ shards of 8³ chunks
    let range = zarr::ShardIndex::byte_range(codec, n, shard.len() as u64).unwrap();
    let (lo, hi) = (range.start as usize, range.end as usize);
    let index = zarr::ShardIndex::decode(codec, n, shard.len() as u64, &shard[lo..hi]).unwrap();
    let mut entries = index.entries().to_vec();
    let zarr::ChunkLocation::Range { offset, .. } = entries[0] else { panic!("chunk 0 stored") };
    entries[0] = zarr::ChunkLocation::Range { offset, nbytes: 0 };
    shard[lo..hi].copy_from_slice(&zarr::ShardIndex::encode(codec, &entries).unwrap());
    std::fs::write(&shard_path, shard).unwrap();
    arr
}

#[test]
fn a_planning_error_names_the_sample_at_fault_and_fill_fills_only_it() {
    let dir = tempfile::tempdir().unwrap();
    let bad_arr = zero_length_chunk_copy(dir.path());
    let good_arr = fixture("shard_end_u16_zstd");
    let full = reference("shard_end_u16_zstd");
    // The good sample comes first: the error must not be blamed on the batch's first sample.
    let good = Sample::new(&good_arr, vec![0, 16, 0], vec![4, 20, 4]).unwrap();
    let bad = Sample::new(&bad_arr, vec![0, 0, 0], vec![4, 4, 4]).unwrap();

    let mut p = Pipeline::new(cfg(2).build().unwrap()).unwrap();
    p.push(vec![good.clone(), bad.clone()]).unwrap();
    p.finish();
    let Err(Error::Sample { index, uri, source }) = p.pop() else { panic!("the batch must fail") };
    assert_eq!((index, uri), (1, bad_arr.clone()));
    assert!(
        matches!(&*source, SampleError::Plan(e) if matches!(**e, planner::Error::ZeroLengthChunk { .. })),
        "{source}"
    );

    // One batch buffer: the first batch leaves non-zero data where the bad sample goes, so
    // only a real fill can make that region zero.
    let fill_cfg = cfg(2).on_error(OnError::Fill).batches_in_flight(1).build().unwrap();
    let mut p = Pipeline::new(fill_cfg).unwrap();
    let nonzero = Sample::new(&good_arr, vec![4, 4, 4], vec![8, 8, 8]).unwrap();
    p.push(vec![good.clone(), nonzero, good, bad]).unwrap();
    p.finish();
    let first = p.pop().unwrap().expect("the first batch");
    assert!(first.data().unwrap()[128..256].iter().any(|&x| x != 0), "poisoned region");
    drop(first);
    let b = p.pop().unwrap().expect("a batch");
    assert_eq!(b.errors().len(), 1, "only the bad sample is filled");
    assert_eq!(b.errors()[0].0, 3);
    expect_sample(&b, 0, &full);
    // The fixture's fill value is 0.
    assert!(b.data().unwrap()[128..256].iter().all(|&x| x == 0), "the bad sample is filled");
    assert!(p.pop().unwrap().is_none());
}
