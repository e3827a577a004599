//! One test per error: each asserts the variant and the numbers it carries.

use std::sync::Arc;

use planner::{ArrayId, Error, OutDtype, PlanLimits, SampleInput, ShardState};
use zarr::{Aabb, ChunkLocation, DataType, ShardIndex};

use crate::common::{entry, packed_index, sample};

fn sharded() -> Vec<planner::ArrayEntry> {
    // Chunks of 4×4 u16: 32 decompressed bytes.
    vec![entry("e", &[8, 8], &[8, 8], Some(&[4, 4]), DataType::UInt16)]
}

fn present(_: &[u64]) -> ShardState {
    ShardState::Present(packed_index(4, |_| Some(10)))
}

fn plan_with(lim: PlanLimits) -> planner::Result<planner::BatchPlan> {
    let arrays = sharded();
    let s = sample(&arrays, 0, &[0, 0], &[8, 8], present);
    planner::plan(&arrays, &[s], &lim, OutDtype::F32)
}

#[test]
fn chunk_over_decompressed_cap_names_the_knob() {
    let lim = PlanLimits { max_chunk_decompressed_bytes: 31, ..PlanLimits::default() };
    assert_eq!(
        plan_with(lim),
        Err(Error::Budget { knob: "max_chunk_decompressed_bytes", needed: 32, limit: 31 })
    );
}

/// A forged index entry claiming far more stored bytes than the chunk can need must not
/// size a read buffer: it is refused against the larger of the cap and twice the decoded
/// size.
#[test]
fn stored_chunk_far_larger_than_its_decoded_size_is_refused() {
    let arrays = sharded();
    let huge = |_: &[u64]| ShardState::Present(packed_index(4, |_| Some(1 << 40)));
    let s = sample(&arrays, 0, &[0, 0], &[4, 4], huge);
    let lim = PlanLimits { max_chunk_decompressed_bytes: 1 << 20, ..PlanLimits::default() };
    let e = planner::plan(&arrays, &[s], &lim, OutDtype::F32).unwrap_err();
    let Error::ChunkTooLarge { sample: 0, nbytes, limit, ref chunk, .. } = e else {
        panic!("expected ChunkTooLarge, got {e:?}")
    };
    assert_eq!((nbytes, limit, chunk.len()), (1 << 40, 1 << 20, 2));
    assert_eq!(e.data_sample(), Some(0), "a forged entry is the sample's data error");
}

#[test]
fn group_too_big_for_an_empty_wave_names_the_knob() {
    // A single 10-byte chunk cannot be staged in 9 bytes.
    let lim = PlanLimits { max_staging_bytes_per_wave: 9, ..PlanLimits::default() };
    assert_eq!(
        plan_with(lim),
        Err(Error::Budget { knob: "max_staging_bytes_per_wave", needed: 10, limit: 9 })
    );
    let lim = PlanLimits { max_chunks_per_wave: 0, ..PlanLimits::default() };
    assert_eq!(
        plan_with(lim),
        Err(Error::Budget { knob: "max_chunks_per_wave", needed: 1, limit: 0 })
    );
    let lim = PlanLimits { max_decompressed_bytes_per_wave: 31, ..PlanLimits::default() };
    assert_eq!(
        plan_with(lim),
        Err(Error::Budget { knob: "max_decompressed_bytes_per_wave", needed: 32, limit: 31 })
    );
    // Overlapping ranges are forced into one read, whose group can outgrow a wave.
    let arrays = sharded();
    let index = Arc::new(ShardIndex::from_entries(vec![
        ChunkLocation::Range { offset: 0, nbytes: 10 },
        ChunkLocation::Range { offset: 5, nbytes: 10 },
        ChunkLocation::Empty,
        ChunkLocation::Empty,
    ]));
    let s = sample(&arrays, 0, &[0, 0], &[8, 8], |_| ShardState::Present(index.clone()));
    let lim = PlanLimits { max_chunks_per_wave: 1, ..PlanLimits::default() };
    assert_eq!(
        planner::plan(&arrays, &[s], &lim, OutDtype::F32),
        Err(Error::Budget { knob: "max_chunks_per_wave", needed: 2, limit: 1 })
    );
}

#[test]
fn native_over_mixed_dtypes_has_no_cast_path() {
    let mut arrays = sharded();
    arrays.push(entry("f", &[8, 8], &[8, 8], Some(&[4, 4]), DataType::Float32));
    let a = sample(&arrays, 0, &[0, 0], &[2, 2], present);
    let b = sample(&arrays, 1, &[0, 0], &[2, 2], present);
    let samples = [a, b];
    assert_eq!(
        planner::plan(&arrays, &samples, &PlanLimits::default(), OutDtype::Native),
        Err(Error::NoCastPath { sample: 1, from: DataType::Float32, to: DataType::UInt16 })
    );
    // Any float output takes both.
    let plan = planner::plan(&arrays, &samples, &PlanLimits::default(), OutDtype::F16).unwrap();
    assert_eq!(plan.element, Some(DataType::Float16));
}

#[test]
fn geometry_errors_carry_the_sample_index() {
    let arrays = sharded();
    let ok = sample(&arrays, 0, &[0, 0], &[2, 2], present);
    let bad = SampleInput {
        array: ArrayId(0),
        aabb: Aabb::new(vec![0, 6], vec![2, 9]).unwrap(),
        shards: vec![],
    };
    assert_eq!(
        planner::plan(&arrays, &[ok, bad], &PlanLimits::default(), OutDtype::F32),
        Err(Error::Geometry {
            sample: 1,
            uri: "e".into(),
            source: zarr::Error::OutOfBounds { axis: 1, lo: 6, hi: 9, extent: 8 },
        })
    );
}

#[test]
fn unknown_array_and_wrong_shard_count() {
    let arrays = sharded();
    let mut s = sample(&arrays, 0, &[0, 0], &[2, 2], present);
    s.array = ArrayId(3);
    assert_eq!(
        planner::plan(&arrays, &[s.clone()], &PlanLimits::default(), OutDtype::F32),
        Err(Error::UnknownArray { sample: 0, array: 3, arrays: 1 })
    );
    s.array = ArrayId(0);
    s.shards.push(ShardState::Absent);
    assert_eq!(
        planner::plan(&arrays, &[s], &PlanLimits::default(), OutDtype::F32),
        Err(Error::ShardCount { sample: 0, uri: "e".into(), expected: 1, got: 2 })
    );
}

#[test]
fn shard_state_of_the_wrong_kind() {
    let arrays = sharded();
    let s = sample(&arrays, 0, &[0, 0], &[2, 2], |_| ShardState::Whole { len: 5 });
    assert_eq!(
        planner::plan(&arrays, &[s], &PlanLimits::default(), OutDtype::F32),
        Err(Error::ShardStateKind {
            sample: 0,
            key: "e/c/0/0".into(),
            state: "Whole",
            sharded: true
        })
    );
    let flat = vec![entry("u", &[8], &[4], None, DataType::UInt8)];
    let s = sample(&flat, 0, &[0], &[2], |_| ShardState::Present(packed_index(1, |_| Some(3))));
    assert_eq!(
        planner::plan(&flat, &[s], &PlanLimits::default(), OutDtype::F32),
        Err(Error::ShardStateKind {
            sample: 0,
            key: "u/c/0".into(),
            state: "Present",
            sharded: false
        })
    );
}

#[test]
fn index_with_wrong_entry_count() {
    let arrays = sharded();
    let s = sample(&arrays, 0, &[0, 0], &[2, 2], |_| {
        ShardState::Present(packed_index(3, |_| Some(10)))
    });
    assert_eq!(
        planner::plan(&arrays, &[s], &PlanLimits::default(), OutDtype::F32),
        Err(Error::IndexEntries { sample: 0, key: "e/c/0/0".into(), expected: 4, got: 3 })
    );
}

#[test]
fn two_samples_disagreeing_about_a_shard() {
    let arrays = sharded();
    let a = sample(&arrays, 0, &[0, 0], &[2, 2], present);
    let b = sample(&arrays, 0, &[4, 4], &[6, 6], |_| ShardState::Absent);
    assert_eq!(
        planner::plan(&arrays, &[a, b], &PlanLimits::default(), OutDtype::F32),
        Err(Error::InconsistentShard { sample: 1, key: "e/c/0/0".into() })
    );
}

#[test]
fn zero_length_chunk_is_rejected() {
    let arrays = sharded();
    let s = sample(&arrays, 0, &[0, 0], &[2, 2], |_| {
        ShardState::Present(packed_index(4, |i| Some(if i == 0 { 0 } else { 5 })))
    });
    assert_eq!(
        planner::plan(&arrays, &[s], &PlanLimits::default(), OutDtype::F32),
        Err(Error::ZeroLengthChunk { sample: 0, key: "e/c/0/0".into(), chunk: vec![0, 0] })
    );
    let flat = vec![entry("u", &[8], &[4], None, DataType::UInt8)];
    let s = sample(&flat, 0, &[5], &[6], |_| ShardState::Whole { len: 0 });
    assert_eq!(
        planner::plan(&flat, &[s], &PlanLimits::default(), OutDtype::F32),
        Err(Error::ZeroLengthChunk { sample: 0, key: "u/c/1".into(), chunk: vec![1] })
    );
}

#[test]
fn empty_batch_is_an_empty_plan() {
    let arrays = sharded();
    let plan = planner::plan(&arrays, &[], &PlanLimits::default(), OutDtype::Native).unwrap();
    assert_eq!(plan.element, None);
    assert!(plan.reads.is_empty() && plan.chunks.is_empty() && plan.waves.is_empty());
    assert_eq!(plan.stats.read_amplification(), 0.0);
}
