//! Corner cases with hand-checked plans: ranks 1 and 5, one-voxel and whole-array boxes,
//! ragged edges, fills, shared chunks, unsharded arrays, gap merging and oversize chunks.

use planner::{ChunkSource, OutDtype, PlanLimits, ShardState};
use zarr::{Aabb, DataType, FillValue};

use crate::common::{entry, meta, packed_index, sample};

fn limits() -> PlanLimits {
    PlanLimits::default()
}

#[test]
fn rank_1_ragged_edge_whole_array() {
    // 23 voxels, shards of 10, chunks of 5: the last shard holds chunk 4 ([20, 25)),
    // which overhangs the array, and chunk 5 which lies wholly outside it.
    let arrays = vec![entry("r1", &[23], &[10], Some(&[5]), DataType::UInt16)];
    let s =
        sample(&arrays, 0, &[0], &[23], |_| ShardState::Present(packed_index(2, |i| Some(10 + i))));
    let plan = planner::plan(&arrays, &[s], &limits(), OutDtype::F32).unwrap();
    assert_eq!(plan.element, Some(DataType::Float32));
    // Three shards, each one read of its touched chunks (back to back), round-robin.
    let reads: Vec<_> = plan.reads.iter().map(|r| (r.file, r.offset, r.len)).collect();
    assert_eq!(reads, vec![(0, 0, 21), (1, 0, 21), (2, 0, 10)]);
    let keys: Vec<_> = plan.files.iter().map(|f| f.key.to_string()).collect();
    assert_eq!(keys, ["r1/c/0", "r1/c/1", "r1/c/2"]);
    let last = plan.chunks.iter().find(|c| c.chunk == [4]).unwrap();
    assert_eq!(last.placements[0].in_chunk, Aabb { lo: vec![0].into(), hi: vec![3].into() });
    assert_eq!(last.placements[0].in_sample, Aabb { lo: vec![20].into(), hi: vec![23].into() });
    assert!(plan.chunks.iter().all(|c| c.chunk != [5]));
    assert_eq!(plan.stats.voxels_delivered, 23);
    assert_eq!(plan.stats.bytes_delivered, 46);
    // Five decoded chunks of 5 u16 each.
    assert_eq!(plan.stats.decompressed_bytes, 50);
    assert_eq!(plan.waves.len(), 1);
}

#[test]
fn rank_5_whole_array_box_places_every_voxel_once() {
    let shape: [u64; 5] = [3, 4, 5, 6, 7];
    let arrays =
        vec![entry("r5", &shape, &[2, 4, 2, 4, 6], Some(&[1, 2, 2, 2, 3]), DataType::Int8)];
    let n_per_shard = 2 * 2 * 2 * 2; // (2, 2, 1, 2, 2) inner chunks per shard
    let s = sample(&arrays, 0, &[0; 5], &shape, |_| {
        ShardState::Present(packed_index(n_per_shard, |_| Some(3)))
    });
    // Ragged edge shards hold index entries the box never touches; reading through those
    // gaps makes one read per shard.
    let lim = PlanLimits { merge_gap_bytes: 1 << 20, ..limits() };
    let plan = planner::plan(&arrays, &[s], &lim, OutDtype::Native).unwrap();
    assert_eq!(plan.element, Some(DataType::Int8));
    let chunks: u64 = shape.iter().zip([1, 2, 2, 2, 3]).map(|(s, c)| s.div_ceil(c)).product();
    assert_eq!(plan.chunks.len() as u64, chunks);
    let placed: u64 =
        plan.chunks.iter().map(|c| c.placements[0].in_sample.num_elements().unwrap()).sum();
    assert_eq!(placed, shape.iter().product::<u64>());
    let shards: u64 = [2u64, 1, 3, 2, 2].iter().product();
    assert_eq!(plan.reads.len() as u64, shards);
    assert_eq!(plan.stats.bytes_read, plan.stats.compressed_bytes_used + plan.stats.gap_bytes);
    assert!(plan.stats.gap_bytes > 0);
}

#[test]
fn one_voxel_box_reads_one_chunk() {
    let arrays = vec![entry("v", &[16, 16, 16], &[8, 8, 8], Some(&[4, 4, 4]), DataType::UInt16)];
    let s = sample(&arrays, 0, &[5, 6, 7], &[6, 7, 8], |_| {
        ShardState::Present(packed_index(8, |i| Some(100 + i)))
    });
    let plan = planner::plan(&arrays, &[s], &limits(), OutDtype::F32).unwrap();
    assert_eq!(plan.chunks.len(), 1);
    let c = &plan.chunks[0];
    assert_eq!(c.chunk, vec![1, 1, 1]);
    assert_eq!(
        c.placements[0].in_chunk,
        Aabb { lo: vec![1, 2, 3].into(), hi: vec![2, 3, 4].into() }
    );
    assert_eq!(
        c.placements[0].in_sample,
        Aabb { lo: vec![0, 0, 0].into(), hi: vec![1, 1, 1].into() }
    );
    // Inner chunk (1,1,1) is index entry 7: offset Σ(100..107) = 721, 107 bytes.
    assert_eq!((plan.reads[0].offset, plan.reads[0].len), (721, 107));
    assert_eq!(
        c.source,
        ChunkSource::Copy {
            read: 0,
            offset_in_read: 0,
            compressed_len: 107,
            decompressed_len: 128
        }
    );
    assert_eq!(plan.stats.read_amplification(), 107.0 / 2.0);
    assert_eq!(plan.stats.decode_amplification(), 64.0);
}

#[test]
fn absent_shard_and_empty_chunk_both_fill_with_the_fill_value() {
    let fill = FillValue::from_ne_bytes(DataType::UInt16, &513u16.to_ne_bytes()).unwrap();
    let m = meta(&[8, 8], &[4, 8], Some(&[4, 4]), DataType::UInt16, fill);
    let arrays = vec![planner::ArrayEntry::new("f", m).unwrap()];
    // Shard (0,0) exists with its second chunk empty; shard (1,0) is absent.
    let s = sample(&arrays, 0, &[0, 0], &[8, 8], |shard| {
        if shard == [0, 0] {
            ShardState::Present(packed_index(2, |i| (i == 0).then_some(9)))
        } else {
            ShardState::Absent
        }
    });
    let plan = planner::plan(&arrays, &[s], &limits(), OutDtype::Bf16).unwrap();
    assert_eq!(plan.reads.len(), 1);
    assert_eq!(plan.fills, 1..4);
    let fills: Vec<_> = plan.chunks[plan.fills.clone()].iter().map(|c| c.chunk.clone()).collect();
    assert_eq!(fills, vec![vec![0, 1], vec![1, 0], vec![1, 1]]);
    for c in &plan.chunks[plan.fills.clone()] {
        assert_eq!(c.source, ChunkSource::Fill { value: fill });
    }
    assert_eq!(plan.stats.fill_chunks, 3);
    assert_eq!(plan.stats.decompressed_bytes, 32);
}

#[test]
fn chunk_shared_by_two_samples_is_read_and_decoded_once() {
    let arrays = vec![entry("s", &[16, 16], &[16, 16], Some(&[8, 8]), DataType::UInt8)];
    let state = |_: &[u64]| ShardState::Present(packed_index(4, |_| Some(20)));
    // Both boxes lie inside chunk (0,0); the second also reaches chunk (0,1).
    let a = sample(&arrays, 0, &[0, 0], &[4, 4], state);
    let b = sample(&arrays, 0, &[2, 2], &[6, 10], state);
    let plan = planner::plan(&arrays, &[a, b], &limits(), OutDtype::F32).unwrap();
    assert_eq!(plan.chunks.len(), 2);
    let shared = &plan.chunks[0];
    assert_eq!(shared.chunk, vec![0, 0]);
    let samples: Vec<_> = shared.placements.iter().map(|p| p.sample).collect();
    assert_eq!(samples, vec![0, 1]);
    assert_eq!(
        shared.placements[1].in_chunk,
        Aabb { lo: vec![2, 2].into(), hi: vec![6, 8].into() }
    );
    // One read of both chunks (adjacent entries 0 and 1), 40 bytes, each decoded once.
    assert_eq!(plan.reads.len(), 1);
    assert_eq!(plan.stats.bytes_read, 40);
    assert_eq!(plan.stats.compressed_bytes_used, 40);
    assert_eq!(plan.stats.decompressed_bytes, 128);
    assert_eq!(plan.stats.placements, 3);
}

#[test]
fn unsharded_chunks_are_whole_objects() {
    let arrays = vec![entry("u/", &[10, 10], &[5, 5], None, DataType::Float32)];
    let s =
        sample(&arrays, 0, &[3, 3], &[7, 7], |c| ShardState::Whole { len: 10 + c[0] * 2 + c[1] });
    let plan = planner::plan(&arrays, &[s], &limits(), OutDtype::F16).unwrap();
    let reads: Vec<_> =
        plan.reads.iter().map(|r| (plan.files[r.file].key.to_string(), r.offset, r.len)).collect();
    assert_eq!(
        reads,
        vec![
            ("u/c/0/0".into(), 0, 10),
            ("u/c/0/1".into(), 0, 11),
            ("u/c/1/0".into(), 0, 12),
            ("u/c/1/1".into(), 0, 13)
        ]
    );
}

#[test]
fn gaps_merge_up_to_merge_gap_bytes() {
    let arrays = vec![entry("g", &[8], &[8], Some(&[4]), DataType::UInt8)];
    let index = std::sync::Arc::new(zarr::ShardIndex::from_entries(vec![
        zarr::ChunkLocation::Range { offset: 0, nbytes: 10 },
        zarr::ChunkLocation::Range { offset: 14, nbytes: 10 },
    ]));
    let s = sample(&arrays, 0, &[0], &[8], |_| ShardState::Present(index.clone()));
    let mut lim = limits();
    lim.merge_gap_bytes = 4;
    let plan = planner::plan(&arrays, std::slice::from_ref(&s), &lim, OutDtype::F32).unwrap();
    assert_eq!(plan.reads.len(), 1);
    assert_eq!((plan.reads[0].offset, plan.reads[0].len), (0, 24));
    assert_eq!(plan.stats.gap_bytes, 4);
    lim.merge_gap_bytes = 3;
    let plan = planner::plan(&arrays, &[s], &lim, OutDtype::F32).unwrap();
    let reads: Vec<_> = plan.reads.iter().map(|r| (r.offset, r.len)).collect();
    assert_eq!(reads, vec![(0, 10), (14, 10)]);
    assert_eq!(plan.stats.gap_bytes, 0);
}

#[test]
fn oversize_chunk_is_read_alone_and_caps_split_reads_and_waves() {
    let arrays = vec![entry("o", &[16], &[16], Some(&[4]), DataType::UInt8)];
    let sizes = [5, 100, 5, 5];
    let s = sample(&arrays, 0, &[0], &[16], |_| {
        ShardState::Present(packed_index(4, |i| Some(sizes[i as usize])))
    });
    let lim = PlanLimits {
        max_read_op_bytes: 10,
        max_chunks_per_wave: 2,
        max_staging_bytes_per_wave: 110,
        ..limits()
    };
    let plan = planner::plan(&arrays, &[s], &lim, OutDtype::F32).unwrap();
    let reads: Vec<_> = plan.reads.iter().map(|r| (r.offset, r.len, r.chunks.len())).collect();
    assert_eq!(reads, vec![(0, 5, 1), (5, 100, 1), (105, 10, 2)]);
    // Waves: {5, 100} by staging and chunk count, then the 2-chunk group alone.
    let waves: Vec<_> = plan.waves.iter().map(|w| (w.reads.clone(), w.staging_bytes)).collect();
    assert_eq!(waves, vec![(0..2, 105), (2..3, 10)]);
}

#[test]
fn reads_interleave_round_robin_across_files() {
    // Two shards, each with chunks spread so that every chunk is its own read.
    let arrays = vec![entry("rr", &[16], &[8], Some(&[2]), DataType::UInt8)];
    let index = std::sync::Arc::new(zarr::ShardIndex::from_entries(
        (0..4).map(|i| zarr::ChunkLocation::Range { offset: i * 100, nbytes: 10 }).collect(),
    ));
    let a = sample(&arrays, 0, &[0], &[16], |_| ShardState::Present(index.clone()));
    let b = sample(&arrays, 0, &[10], &[12], |_| ShardState::Present(index.clone()));
    let plan = planner::plan(&arrays, &[b, a], &limits(), OutDtype::F32).unwrap();
    let order: Vec<_> = plan.reads.iter().map(|r| (r.file, r.offset)).collect();
    assert_eq!(
        order,
        vec![(0, 0), (1, 0), (0, 100), (1, 100), (0, 200), (1, 200), (0, 300), (1, 300)]
    );
}
