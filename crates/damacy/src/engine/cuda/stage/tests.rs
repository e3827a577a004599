//! The workers' part of a wave on the host (no GPU): every plan inconsistency a job can
//! meet, and a job that panics, end in an error for each sample the affected chunks feed;
//! none leaves a chunk undecoded and unreported, and the wave's accounting always runs.

use std::sync::atomic::{AtomicU8, AtomicUsize};
use std::sync::{Arc, Condvar, Mutex};

use planner::{
    ArrayEntry, ArrayId, BatchPlan, ChunkPlan, ChunkSource, FileRef, Placement, ReadOp, Wave,
};
use zarr::{Aabb, ArrayMetadata, FillValue};

use super::super::route::route;
use super::{BatchCtx, ChunkState, Region, StageMem, WaveState, WaveWork};
use crate::config::OutDtype;
use crate::engine::ArrayFacts;
use crate::error::{PlanFault, SampleError};
use crate::stats::StatCounters;

/// Plain memory standing in for a wave slot's pinned buffers.
#[derive(Debug)]
struct HostMem(Box<[AtomicU8]>);

impl HostMem {
    fn new(len: usize) -> Self {
        Self((0..len).map(|_| AtomicU8::new(0xAA)).collect())
    }

    fn bytes(&self, off: usize, len: usize) -> Vec<u8> {
        self.0[off..off + len]
            .iter()
            .map(|b| b.load(std::sync::atomic::Ordering::Relaxed))
            .collect()
    }
}

impl StageMem for HostMem {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn as_ptr(&self) -> *mut u8 {
        // `AtomicU8` has `u8`'s layout and allows writes through a shared reference.
        self.0.as_ptr().cast::<u8>().cast_mut()
    }
}

/// The file both chunks are read from: chunk 0 is bytes 0..4, chunk 1 bytes 4..8.
const FILE: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

/// An unsharded uint8 array of 8 elements in chunks of 4, stored raw (the CPU decodes it).
fn entry() -> ArrayEntry {
    let json = br#"{"zarr_format":3,"node_type":"array","shape":[8],"data_type":"uint8",
        "chunk_grid":{"name":"regular","configuration":{"chunk_shape":[4]}},
        "chunk_key_encoding":{"name":"default","configuration":{"separator":"/"}},
        "fill_value":0,"codecs":[{"name":"bytes"}]}"#;
    let meta = ArrayMetadata::parse(json).expect("metadata");
    ArrayEntry::new("a", Arc::new(meta)).expect("entry")
}

fn copy(read: usize) -> ChunkSource {
    ChunkSource::Copy { read, offset_in_read: 0, compressed_len: 4, decompressed_len: 4 }
}

fn whole(sample: usize) -> Placement {
    let b = Aabb::new(vec![0], vec![4]).expect("box");
    Placement { sample, in_chunk: b.clone(), in_sample: b }
}

/// A consistent plan: two read ops of one file, one chunk each, chunk `k` feeding sample
/// `k`, all in one wave.
fn plan() -> BatchPlan {
    let file = FileRef { array: ArrayId(0), coords: vec![0], key: Arc::from("f") };
    let read = |k: usize| ReadOp { file: 0, offset: 4 * k as u64, len: 4, chunks: k..k + 1 };
    let chunk = |k: usize| ChunkPlan {
        array: ArrayId(0),
        chunk: vec![k as u64],
        source: copy(k),
        placements: vec![whole(k)],
    };
    BatchPlan {
        element: Some(zarr::DataType::UInt8),
        files: vec![file],
        reads: vec![read(0), read(1)],
        chunks: vec![chunk(0), chunk(1)],
        cached: 2..2,
        fills: 2..2,
        waves: vec![Wave { reads: 0..2, chunks: 0..2, staging_bytes: 8, decompressed_bytes: 8 }],
        stats: Default::default(),
    }
}

/// Runs every read op of `plan`'s first wave on this thread, as the workers would, and
/// returns the wave's state as the submit thread takes it.
fn run_wave(plan: BatchPlan, positions: Vec<usize>, store: &dyn store::Store) -> WaveState {
    let e = entry();
    let wave = plan.waves[0].clone();
    let ctx = BatchCtx {
        routes: Arc::new(vec![route(e.chunk_codecs())]),
        facts: Arc::new(vec![ArrayFacts::new(&e, OutDtype::Native)]),
        arrays: Arc::new(vec![e]),
        plan: Arc::new(plan),
        positions: Arc::new(positions),
        sample_shape: vec![4],
        out_dtype: OutDtype::Native,
        out_elems: 8,
        cache: None,
    };
    let region = |k: u64| Some(Region { staging: 2048 * k, staging_len: 1028, arena: 256 * k });
    let work = WaveWork {
        ctx,
        chunks: wave.chunks.clone(),
        regions: (0..wave.chunks.len() as u64).map(region).collect(),
        staging_used: 0,
        cpu_share: 0,
        staging: HostMem::new(4096),
        decoded: HostMem::new(4096),
        gds: None,
        gpu: false,
        in_align: 1,
        out_align: 1,
        state: Mutex::new(WaveState {
            chunk_state: vec![ChunkState::Failed; wave.chunks.len()],
            ..WaveState::default()
        }),
        remaining: AtomicUsize::new(wave.reads.len()),
        done: (Mutex::new(wave.reads.is_empty()), Condvar::new()),
    };
    let stats = StatCounters::default();
    let mut buf = Vec::new();
    for r in wave.reads.clone() {
        work.run(r, None, store, &mut buf, &stats);
    }
    // Every job counted itself finished, however it ended.
    assert!(*work.done.0.lock().expect("done"), "the wave's jobs did not all finish");
    work.wait();
    let st = work.take_state();
    // What the CPU decoded landed in the chunk's arena region.
    for (k, cs) in st.chunk_state.iter().enumerate() {
        if *cs == ChunkState::Cpu {
            assert_eq!(work.decoded.bytes(256 * k, 4), FILE[4 * k..4 * k + 4], "chunk {k}");
        }
    }
    st
}

fn fs_store() -> (tempfile::TempDir, store::FsStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("f"), FILE).expect("write");
    let s = store::FsStore::new(dir.path(), store::FsStoreConfig::default()).expect("store");
    (dir, s)
}

/// The plan fault of each error, by sample, sorted.
fn faults(st: &WaveState) -> Vec<(usize, PlanFault)> {
    let mut v: Vec<(usize, PlanFault)> = st
        .errors
        .iter()
        .map(|(s, e)| match e {
            SampleError::PlanInconsistent { stage, fault } => {
                assert_eq!(*stage, "CUDA staging");
                (*s, fault.clone())
            }
            other => panic!("sample {s}: expected a plan inconsistency, got {other:?}"),
        })
        .collect();
    v.sort_by_key(|(s, _)| *s);
    v
}

#[test]
fn a_consistent_wave_decodes_every_chunk_and_reports_nothing() {
    let (_dir, store) = fs_store();
    let st = run_wave(plan(), vec![0, 1], &store);
    assert!(st.errors.is_empty(), "{:?}", st.errors);
    assert_eq!(st.chunk_state, vec![ChunkState::Cpu, ChunkState::Cpu]);
}

#[test]
fn a_read_op_missing_from_the_plan_fails_every_sample_of_its_wave() {
    let (_dir, store) = fs_store();
    let mut p = plan();
    // The wave lists a third read op the plan does not have.
    p.waves[0].reads = 0..3;
    let st = run_wave(p, vec![0, 1], &store);
    let fault = PlanFault::Read { read: 2 };
    assert_eq!(faults(&st), vec![(0, fault.clone()), (1, fault)]);
}

#[test]
fn a_file_missing_from_the_plan_fails_the_samples_of_its_read_op() {
    let (_dir, store) = fs_store();
    let mut p = plan();
    p.reads[1].file = 5;
    let st = run_wave(p, vec![0, 1], &store);
    assert_eq!(faults(&st), vec![(1, PlanFault::File { read: 1, file: 5 })]);
    assert_eq!(st.chunk_state, vec![ChunkState::Cpu, ChunkState::Failed]);
}

#[test]
fn a_chunk_of_an_unknown_array_fails_its_samples() {
    let (_dir, store) = fs_store();
    let mut p = plan();
    p.chunks[1].array = ArrayId(3);
    let st = run_wave(p, vec![0, 1], &store);
    assert_eq!(faults(&st), vec![(1, PlanFault::Array { chunk: 1, array: 3 })]);
    assert_eq!(st.chunk_state, vec![ChunkState::Cpu, ChunkState::Failed]);
}

#[test]
fn chunk_bytes_outside_their_read_fail_its_samples() {
    let (_dir, store) = fs_store();
    let mut p = plan();
    p.chunks[1].source =
        ChunkSource::Copy { read: 1, offset_in_read: 2, compressed_len: 4, decompressed_len: 4 };
    let st = run_wave(p, vec![0, 1], &store);
    assert_eq!(faults(&st), vec![(1, PlanFault::ChunkBytes { chunk: 1, read: 1 })]);
}

#[test]
fn a_fill_chunk_in_a_read_group_fails_its_samples() {
    let (_dir, store) = fs_store();
    let mut p = plan();
    p.chunks[1].source = ChunkSource::Fill { value: FillValue::zero(zarr::DataType::UInt8) };
    let st = run_wave(p, vec![0, 1], &store);
    assert_eq!(faults(&st), vec![(1, PlanFault::FillInRead { chunk: 1, read: 1 })]);
}

#[test]
fn a_read_op_chunk_outside_its_wave_fails_its_samples() {
    let (_dir, store) = fs_store();
    let mut p = plan();
    // Read op 1 is in the wave, its chunk is not.
    p.waves[0].chunks = 0..1;
    let st = run_wave(p, vec![0, 1], &store);
    assert_eq!(faults(&st), vec![(1, PlanFault::OutsideWave { chunk: 1, read: 1 })]);
    assert_eq!(st.chunk_state, vec![ChunkState::Cpu]);
}

#[test]
fn a_wave_chunk_no_read_op_holds_is_reported() {
    let (_dir, store) = fs_store();
    let mut p = plan();
    // Chunk 1 is in the wave, its read op is not.
    p.waves[0].reads = 0..1;
    let st = run_wave(p, vec![0, 1], &store);
    assert_eq!(faults(&st), vec![(1, PlanFault::Unreported { chunk: 1 })]);
    assert_eq!(st.chunk_state, vec![ChunkState::Cpu, ChunkState::Failed]);
}

#[test]
fn a_decoded_chunk_whose_sample_has_no_batch_position_is_failed() {
    let (_dir, store) = fs_store();
    // Plan sample 1 has no batch position.
    let st = run_wave(plan(), vec![0], &store);
    assert_eq!(faults(&st), vec![(1, PlanFault::Sample { chunk: 1, sample: 1 })]);
    assert_eq!(st.chunk_state, vec![ChunkState::Cpu, ChunkState::Failed]);
}

#[test]
fn a_wave_whose_chunks_are_not_in_the_plan_fails_every_sample() {
    let (_dir, store) = fs_store();
    let mut p = plan();
    p.waves[0].chunks = 0..3;
    let st = run_wave(p, vec![0, 1], &store);
    let fault = PlanFault::Chunks { start: 0, end: 3 };
    assert_eq!(faults(&st), vec![(0, fault.clone()), (1, fault)]);
    assert!(st.chunk_state.iter().all(|c| *c == ChunkState::Failed));
}

/// A store whose reads panic.
#[derive(Debug)]
struct PanickingStore(store::FsStore);

impl store::Store for PanickingStore {
    fn stat(&self, key: &str) -> store::Result<Option<u64>> {
        self.0.stat(key)
    }
    fn read(&self, _key: &str, _offset: u64, _buf: &mut [u8]) -> store::Result<usize> {
        panic!("a store that panics")
    }
    fn read_all(&self, key: &str) -> store::Result<Vec<u8>> {
        self.0.read_all(key)
    }
    fn submit(&self, reads: Vec<store::ReadRequest>) -> store::Result<store::Ticket> {
        self.0.submit(reads)
    }
    fn stats(&self) -> store::StoreStats {
        self.0.stats()
    }
}

#[test]
fn a_job_that_panics_fails_its_wave_and_still_counts_as_finished() {
    let (_dir, store) = fs_store();
    let st = run_wave(plan(), vec![0, 1], &PanickingStore(store));
    let mut samples: Vec<usize> = st
        .errors
        .iter()
        .map(|(s, e)| match e {
            SampleError::Internal { stage: "CUDA decode worker" } => *s,
            other => panic!("sample {s}: expected an internal error, got {other:?}"),
        })
        .collect();
    samples.sort_unstable();
    samples.dedup();
    assert_eq!(samples, vec![0, 1]);
    assert_eq!(st.chunk_state, vec![ChunkState::Failed, ChunkState::Failed]);
}
