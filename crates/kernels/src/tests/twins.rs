//! The host twins (`crate::host`) against the host references, on the machine without
//! a GPU: what the GPU tests check of the kernels, checked of their twins, so that the
//! CUDA engine's orchestration, run in CI on the twins, runs on the kernels' semantics.

use zarr::{DataType, OutDtype};

use super::reference::{
    Rng, SHAPES, blosc_shuffled, case, compressible, fill_boxes, fill_reference, fill_specs,
    random_box, scatter,
};
use crate::desc::*;
use crate::error::Error;
use crate::host;

const POISON: u8 = 0xab;

/// A range over a host buffer, standing in for device memory.
fn range<T>(v: &[T]) -> DeviceRange {
    // SAFETY: a live host buffer, used only while `v` is borrowed by the caller.
    unsafe { DeviceRange::from_raw(v.as_ptr() as u64, std::mem::size_of_val(v) as u64) }
}

/// A range over a host buffer the callee writes.
fn range_mut<T>(v: &mut [T]) -> DeviceRange {
    // SAFETY: as `range`, and the pointer comes from a unique borrow.
    unsafe { DeviceRange::from_raw(v.as_mut_ptr() as u64, std::mem::size_of_val(v) as u64) }
}

/// Runs the twin of assemble for the placements of `case` over `chunks` (their bytes as
/// the "device" holds them, shuffled or not) into a poisoned output.
fn twin_assemble(
    c: &super::reference::Case,
    src_t: DataType,
    out: OutDtype,
    chunks: &[Vec<u8>],
    shuffle: ShuffleSpec,
) -> Vec<u8> {
    let out_elems = c.samples * c.sample_shape.iter().product::<u64>();
    let placements: Vec<Placement<'_>> = c
        .boxes
        .iter()
        .map(|(k, s, lc, ls, e)| Placement {
            src: chunks[*k].as_ptr() as u64,
            src_dtype: src_t,
            shuffle,
            chunk_shape: &c.chunk_shape,
            in_chunk_lo: lc,
            sample: *s,
            sample_shape: &c.sample_shape,
            in_sample_lo: ls,
            extent: e,
        })
        .collect();
    let packed = pack_placements(&placements, out, out_elems).expect("valid placements");
    // u64 words, so the output is aligned for every element size.
    let bytes = out_elems as usize * out.size(src_t);
    let mut dst = vec![u64::from_ne_bytes([POISON; 8]); bytes.div_ceil(8)];
    // SAFETY: host buffers alive for the call; descriptors packed for this output.
    unsafe { host::assemble(out, range_mut(&mut dst), range(&packed), packed.len() as u32) }
        .expect("host assemble");
    bytemuck::cast_slice::<u64, u8>(&dst)[..bytes].to_vec()
}

/// The reference scatter of `case` from the plain chunks.
fn reference(
    c: &super::reference::Case,
    src_t: DataType,
    out: OutDtype,
    plain: &[Vec<u8>],
) -> Vec<u8> {
    let out_elems = c.samples * c.sample_shape.iter().product::<u64>();
    let mut want = vec![POISON; out_elems as usize * out.size(src_t)];
    for (k, s, lc, ls, e) in &c.boxes {
        scatter(src_t, out, &plain[*k], &c.chunk_shape, lc, *s, &c.sample_shape, ls, e, &mut want);
    }
    want
}

#[test]
fn host_assemble_matches_the_reference_for_every_dtype_rank_and_output() {
    let mut rng = Rng::new(11);
    let mut runs = 0;
    for (chunk, sample) in SHAPES {
        let c = case(&mut rng, chunk, sample);
        let elems = chunk.iter().product::<u64>() as usize;
        for src_t in DataType::ALL {
            let plain: Vec<Vec<u8>> = (0..2).map(|_| rng.elements(src_t, elems)).collect();
            for out in OutDtype::ALL {
                let got = twin_assemble(&c, src_t, out, &plain, ShuffleSpec::default());
                assert!(
                    got == reference(&c, src_t, out, &plain),
                    "rank {} {src_t:?} -> {out:?}",
                    chunk.len()
                );
                runs += 1;
            }
        }
    }
    assert_eq!(runs, 5 * 13 * 4);
}

#[test]
fn host_assemble_folds_blosc_byte_and_bit_unshuffle_into_the_gather() {
    let mut rng = Rng::new(12);
    let mut seen = [0usize; 3];
    for (src_t, shape) in [
        (DataType::UInt16, [16u64, 24, 8]),
        (DataType::Float32, [8, 8, 20]),
        (DataType::Float64, [5, 7, 9]),
    ] {
        let elems = shape.iter().product::<u64>() as usize;
        for (shuffle, blocksize) in [
            (zarr::blosc::Shuffle::Byte, 256usize),
            (zarr::blosc::Shuffle::Bit, 512),
            (zarr::blosc::Shuffle::Bit, 0),
        ] {
            let plain = compressible(&mut rng, elems * src_t.size());
            let opts = zarr::blosc::EncodeOptions {
                compressor: zarr::blosc::Compressor::Zstd,
                clevel: 3,
                shuffle,
                typesize: src_t.size(),
                blocksize,
                split: true,
            };
            let (shuffled, spec) = blosc_shuffled(&plain, &opts);
            seen[spec.shuffle as usize] += 1;
            let c = super::reference::Case {
                chunk_shape: shape.to_vec(),
                sample_shape: shape.to_vec(),
                boxes: (0..3)
                    .map(|s| {
                        let (lc, ls, e) = random_box(&mut rng, &shape, &shape);
                        (0usize, s, lc, ls, e)
                    })
                    .collect(),
                samples: 3,
            };
            for out in [OutDtype::Native, OutDtype::F32] {
                let got = twin_assemble(&c, src_t, out, std::slice::from_ref(&shuffled), spec);
                let want = reference(&c, src_t, out, std::slice::from_ref(&plain));
                assert!(got == want, "{src_t:?} {spec:?} -> {out:?}");
            }
        }
    }
    assert!(seen[Shuffle::Byte as usize] >= 3 && seen[Shuffle::Bit as usize] >= 3, "{seen:?}");
}

#[test]
fn host_fill_writes_each_box_and_nothing_else() {
    let mut rng = Rng::new(13);
    for (value, shape) in [
        (vec![0x5au8], &[7u64, 9][..]),
        (vec![0x34, 0x12], &[3, 4, 5][..]),
        (vec![1, 2, 3, 4, 5, 6, 7, 8], &[2, 3, 2, 3, 2][..]),
    ] {
        let boxes = fill_boxes(&mut rng, shape, &[0, 2]);
        let specs = fill_specs(&boxes, shape);
        let n = shape.iter().product::<u64>() * 3;
        let packed = pack_fills(&specs, &value, n).expect("pack");
        let mut dst = vec![u64::from_ne_bytes([POISON; 8]); (n as usize * value.len()).div_ceil(8)];
        // SAFETY: host buffers alive for the call.
        unsafe {
            host::fill(value.len() as u32, range_mut(&mut dst), range(&packed), packed.len() as u32)
        }
        .expect("host fill");
        let got = &bytemuck::cast_slice::<u64, u8>(&dst)[..n as usize * value.len()];
        let want = fill_reference(&boxes, shape, &value, n, POISON);
        assert_eq!(got, &want[..], "{value:?} {shape:?}");
    }
    let dst = [0u64; 4];
    // SAFETY: refused before any write.
    let bad = unsafe { host::fill(3, range(&dst), range(&dst), 0) };
    assert!(matches!(bad, Err(Error::BadBox { value: 3, .. })), "{bad:?}");
}

#[test]
fn host_memcpy_and_status_reduce_do_what_the_kernels_do() {
    let src: Vec<u8> = (0..200u8).collect();
    let mut dst = vec![0u8; 200];
    let base = (src.as_ptr() as u64, range_mut(&mut dst).ptr());
    let ranges = [
        CopyRange { src: base.0, dst: base.1 + 100, len: 50 },
        CopyRange { src: base.0 + 150, dst: base.1, len: 7 },
    ];
    // SAFETY: disjoint ranges of live host buffers.
    unsafe { host::memcpy_batch(range(&ranges), 2) }.expect("memcpy");
    assert_eq!(&dst[100..150], &src[..50]);
    assert_eq!(&dst[..7], &src[150..157]);
    assert!(dst[7..100].iter().chain(&dst[150..]).all(|&b| b == 0));
    // SAFETY: a refused call writes nothing.
    let short = unsafe { host::memcpy_batch(range(&ranges), 3) };
    assert!(matches!(short, Err(Error::BufferTooSmall { needed: 72, len: 48, .. })), "{short:?}");

    let reduce = |statuses: &[i32], actual: &[u64], expected: &[u64]| {
        let mut report = [0xdead_beef_u32; 2];
        let n = statuses.len() as u32;
        // SAFETY: live host arrays of `n` entries and a two-word report.
        unsafe {
            host::status_reduce(
                range(statuses),
                range(actual),
                range(expected),
                n,
                range_mut(&mut report),
            )
        }
        .expect("reduce");
        DecodeReport::from_bytes(bytemuck::cast(report))
    };
    let ok = reduce(&[0, 0, 0], &[5, 6, 7], &[5, 6, 7]);
    assert_eq!(ok, DecodeReport { first_failing: None, failures: 0 });
    let bad = reduce(&[0, 3, 0, 0], &[5, 6, 1, 8], &[5, 6, 7, 8]);
    assert_eq!(bad, DecodeReport { first_failing: Some(1), failures: 2 });
}

#[test]
fn host_zstd_decode_reports_each_bad_frame_in_its_status_as_nvcomp_does() {
    let mut rng = Rng::new(14);
    let plain: Vec<Vec<u8>> = (0..4).map(|_| compressible(&mut rng, 3000)).collect();
    let mut frames: Vec<Vec<u8>> =
        plain.iter().map(|p| zstd::bulk::compress(p, 3).expect("compress")).collect();
    // Frame 1 truncated; frame 3 decodes to more than its capacity allows.
    let cut = frames[1].len() / 2;
    frames[1].truncate(cut);
    let mut outs: Vec<Vec<u8>> = vec![vec![0u8; 3000], vec![0; 3000], vec![0; 3000], vec![0; 100]];
    let comp_ptrs: Vec<u64> = frames.iter().map(|f| f.as_ptr() as u64).collect();
    let comp_bytes: Vec<u64> = frames.iter().map(|f| f.len() as u64).collect();
    let capacity: Vec<u64> = outs.iter().map(|o| o.len() as u64).collect();
    let out_ptrs: Vec<u64> = outs.iter_mut().map(|o| o.as_mut_ptr() as u64).collect();
    let mut actual = vec![u64::MAX; 4];
    let mut statuses = vec![-1i32; 4];
    let batch = ZstdBatch {
        chunks: 4,
        max_chunk_bytes: 3000,
        comp_ptrs: range(&comp_ptrs),
        comp_bytes: range(&comp_bytes),
        out_capacity: range(&capacity),
        out_ptrs: range(&out_ptrs),
        out_actual: range_mut(&mut actual),
        statuses: range_mut(&mut statuses),
    };
    // SAFETY: live host frames and outputs of the given sizes.
    unsafe { host::zstd_decode(&batch) }.expect("decode");
    let bad = host::STATUS_CANNOT_DECOMPRESS;
    assert_eq!(statuses, [0, bad, 0, bad]);
    assert_eq!(actual, [3000, 0, 3000, 0]);
    assert_eq!(outs[0], plain[0]);
    assert_eq!(outs[2], plain[2]);
    let short = ZstdBatch { chunks: 5, ..batch };
    // SAFETY: refused before any access.
    let e = unsafe { host::zstd_decode(&short) };
    assert!(matches!(e, Err(Error::BufferTooSmall { .. })), "{e:?}");
}
