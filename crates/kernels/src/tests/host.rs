//! Host tests: packing and validation, struct layouts against `kernels.cu`, the embedded
//! source, the nvCOMP search order, and typed errors on a machine without CUDA.

use std::ffi::OsString;
use std::path::PathBuf;

use super::reference::{Rng, box_coords, f32_to_bf16_bits, f32_to_f16_bits, scatter};
use crate::desc::*;
use crate::error::Error;
use crate::search::{Candidate, NVCOMP_SONAMES, SearchInputs, candidates, nvcomp_status_name};
use crate::{ENTRY_POINTS, KERNELS_CU};
use zarr::{DataType, OutDtype};

fn placement<'a>(
    chunk_shape: &'a [u64],
    in_chunk_lo: &'a [u64],
    sample: u64,
    sample_shape: &'a [u64],
    in_sample_lo: &'a [u64],
    extent: &'a [u64],
) -> Placement<'a> {
    Placement {
        src: 0x1000,
        src_dtype: DataType::UInt16,
        shuffle: ShuffleSpec::default(),
        chunk_shape,
        in_chunk_lo,
        sample,
        sample_shape,
        in_sample_lo,
        extent,
    }
}

#[test]
fn packing_computes_bases_strides_and_counts() {
    // Chunk 4x5x6, box at (1,2,3) of extent 2x3x3, into sample 2 of shape 3x4x8 at (0,1,4).
    let p = placement(&[4, 5, 6], &[1, 2, 3], 2, &[3, 4, 8], &[0, 1, 4], &[2, 3, 3]);
    let packed = pack_placements(&[p], OutDtype::F32, 3 * 3 * 4 * 8).unwrap();
    let k = packed[0];
    assert_eq!(k.src, 0x1000);
    assert_eq!(k.rank, 3);
    assert_eq!(k.count, 18);
    assert_eq!(k.src_base, 30 + 2 * 6 + 3);
    assert_eq!(k.dst_base, 2 * 96 + 8 + 4);
    assert_eq!(&k.extent[..4], &[2, 3, 3, 0]);
    assert_eq!(&k.src_stride[..3], &[30, 6, 1]);
    assert_eq!(&k.dst_stride[..3], &[32, 8, 1]);
    assert_eq!(k.nbytes, 120 * 2);
    assert_eq!(k.src_dtype, DataType::UInt16 as u32);
    assert_eq!(k.shuffle, 0);
    // The packed form reproduces every (src, dst) element pair of the box.
    for c in box_coords(&[2, 3, 3]) {
        let s: u64 = (0..3).map(|a| c[a] * k.src_stride[a]).sum::<u64>() + k.src_base;
        let d: u64 = (0..3).map(|a| c[a] * k.dst_stride[a]).sum::<u64>() + k.dst_base;
        assert_eq!(s, (1 + c[0]) * 30 + (2 + c[1]) * 6 + 3 + c[2]);
        assert_eq!(d, 2 * 96 + c[0] * 32 + (1 + c[1]) * 8 + 4 + c[2]);
    }
}

#[test]
fn packing_rejects_bad_boxes_with_typed_errors() {
    let ok = |p: Placement<'_>| pack_placements(&[p], OutDtype::F32, 1000).map(|_| ());
    let shape9 = [1u64; 9];
    let lo9 = [0u64; 9];
    assert_eq!(
        ok(placement(&shape9, &lo9, 0, &shape9, &lo9, &shape9)),
        Err(Error::RankTooLarge { index: 0, rank: 9, max: MAX_RANK })
    );
    assert!(matches!(
        ok(placement(&[4, 4], &[3, 0], 0, &[4, 4], &[0, 0], &[2, 4])),
        Err(Error::BadBox { index: 0, axis: 0, value: 5, limit: 4, .. })
    ));
    assert!(matches!(
        ok(placement(&[4, 4], &[0, 0], 0, &[4, 4], &[0, 1], &[4, 4])),
        Err(Error::BadBox { axis: 1, value: 5, limit: 4, .. })
    ));
    assert!(matches!(
        ok(placement(&[4, 4], &[0], 0, &[4, 4], &[0, 0], &[4, 4])),
        Err(Error::BadBox { what: "shapes and boxes have different ranks", .. })
    ));
    // Sample 62 of 16 elements ends at 1008 > 1000.
    assert_eq!(
        ok(placement(&[4, 4], &[0, 0], 62, &[4, 4], &[0, 0], &[4, 4])),
        Err(Error::OutOfOutput { index: 0, end: 1008, len: 1000 })
    );
    let mut p = placement(&[4, 4], &[0, 0], 0, &[4, 4], &[0, 0], &[4, 4]);
    p.src = 0x1001;
    assert_eq!(ok(p), Err(Error::Misaligned { index: 0, addr: 0x1001, align: 2 }));
    // Shuffled sources are read byte by byte: any address works, but typesize 0 does not.
    p.shuffle = ShuffleSpec { shuffle: Shuffle::Byte, typesize: 2, blocksize: 64 };
    assert_eq!(ok(p), Ok(()));
    p.shuffle.typesize = 0;
    assert_eq!(ok(p), Err(Error::BadShuffle { index: 0, typesize: 0, blocksize: 64 }));
    let big = [1u64 << 33];
    assert!(matches!(
        ok(placement(&big, &[0], 0, &big, &[0], &big)),
        Err(Error::OutOfOutput { .. } | Error::Overflow { .. })
    ));
    assert!(matches!(
        pack_placements(&[placement(&big, &[0], 0, &big, &[0], &big)], OutDtype::F32, u64::MAX),
        Err(Error::Overflow { what: "box extent (kernels index with u32)", .. })
    ));
    let huge = [u64::MAX, 2];
    assert!(matches!(
        ok(placement(&huge, &[0, 0], 0, &[4, 4], &[0, 0], &[1, 1])),
        Err(Error::Overflow { .. })
    ));
}

#[test]
fn native_output_refuses_mixed_element_sizes() {
    let a = placement(&[4], &[0], 0, &[4], &[0], &[4]);
    let mut b = a;
    b.src_dtype = DataType::Float32;
    b.sample = 1;
    assert!(pack_placements(&[a, b], OutDtype::F32, 8).is_ok());
    assert!(matches!(
        pack_placements(&[a, b], OutDtype::Native, 8),
        Err(Error::BadBox { index: 1, value: 4, limit: 2, .. })
    ));
}

#[test]
fn fills_pack_the_value_little_end_first() {
    let f = FillSpec { sample: 1, sample_shape: &[2, 3], in_sample_lo: &[1, 1], extent: &[1, 2] };
    let packed = pack_fills(&[f], &[0x34, 0x12], 12).unwrap();
    assert_eq!(packed[0].value, 0x1234);
    assert_eq!(packed[0].dst_base, 6 + 3 + 1);
    assert_eq!(packed[0].count, 2);
    assert!(matches!(pack_fills(&[f], &[1, 2, 3], 12), Err(Error::BadBox { value: 3, .. })));
    assert!(matches!(pack_fills(&[f], &[1], 9), Err(Error::OutOfOutput { end: 12, len: 9, .. })));
}

/// Field names of `struct NAME { ... }` in the CUDA source, in order.
pub(crate) fn cuda_fields(name: &str) -> Vec<String> {
    let start = KERNELS_CU.find(&format!("struct {name} {{")).expect("struct in kernels.cu");
    let body = &KERNELS_CU[start..];
    let body = &body[body.find('{').unwrap() + 1..body.find("};").unwrap()];
    body.lines()
        .map(|l| l.split("//").next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .flat_map(|l| {
            let decl = l.trim_end_matches(';');
            let names = decl.split_once(' ').unwrap().1;
            names
                .split(',')
                .map(|n| n.trim().split('[').next().unwrap().to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn packed_structs_match_the_cuda_layouts() {
    assert_eq!(
        cuda_fields("Placement"),
        [
            "src",
            "src_base",
            "dst_base",
            "blocksize",
            "nbytes",
            "rank",
            "src_dtype",
            "shuffle",
            "typesize",
            "count",
            "pad",
            "extent",
            "src_stride",
            "dst_stride"
        ]
    );
    assert_eq!(std::mem::size_of::<PackedPlacement>(), 5 * 8 + 6 * 4 + 8 * 4 + 2 * 8 * 8);
    assert_eq!(std::mem::offset_of!(PackedPlacement, rank), 40);
    assert_eq!(std::mem::offset_of!(PackedPlacement, extent), 64);
    assert_eq!(std::mem::offset_of!(PackedPlacement, src_stride), 96);
    assert_eq!(std::mem::offset_of!(PackedPlacement, dst_stride), 160);
    assert_eq!(
        cuda_fields("FillBox"),
        ["dst_base", "value", "rank", "count", "extent", "dst_stride"]
    );
    assert_eq!(std::mem::size_of::<PackedFill>(), 8 + 8 + 4 + 4 + 32 + 64);
    assert_eq!(std::mem::offset_of!(PackedFill, dst_stride), 56);
    assert_eq!(cuda_fields("CopyRange"), ["src", "dst", "len"]);
    assert_eq!(std::mem::size_of::<CopyRange>(), 24);
    assert!(KERNELS_CU.contains(&format!("#define MAX_RANK {MAX_RANK}")));
}

#[test]
fn the_cuda_source_defines_every_entry_point_and_the_codes() {
    for name in ENTRY_POINTS {
        let plain = format!("extern \"C\" __global__ void {name}(");
        let via_macro = format!("ASSEMBLE_KERNEL({name},");
        assert!(KERNELS_CU.contains(&plain) || KERNELS_CU.contains(&via_macro), "{name}");
    }
    for (t, name) in DataType::ALL.iter().zip([
        "BOOL", "I8", "I16", "I32", "I64", "U8", "U16", "U32", "U64", "F16", "BF16", "F32", "F64",
    ]) {
        assert!(KERNELS_CU.contains(&format!("#define DT_{name} {}\n", *t as u32)), "{name}");
    }
    for (o, name) in OutDtype::ALL.iter().zip(["F32", "BF16", "F16", "NATIVE"]) {
        assert!(KERNELS_CU.contains(&format!("#define OUT_{name} {}\n", *o as u32)), "{name}");
    }
    for (s, name) in [(Shuffle::None, "NONE"), (Shuffle::Byte, "BYTE"), (Shuffle::Bit, "BIT")] {
        assert!(KERNELS_CU.contains(&format!("#define SH_{name} {}\n", s as u32)), "{name}");
    }
    assert!(!KERNELS_CU.contains('\0'), "NVRTC takes the source as a C string");
}

#[test]
fn nvcomp_search_order_is_env_then_loader_then_wheels() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let wheel_root = PathBuf::from("/site");
    // A folder in the variable: the folder, a wheel beneath it, lib64/lib beneath it.
    let c = candidates(&SearchInputs {
        env: Some(dir.clone().into_os_string()),
        wheel_roots: vec![wheel_root.clone()],
    });
    let files = |d: PathBuf| NVCOMP_SONAMES.iter().map(move |n| Candidate::File(d.join(n)));
    let mut want: Vec<Candidate> = files(dir.clone()).collect();
    want.extend(files(dir.join("nvidia/libnvcomp/lib64")));
    want.extend(files(dir.join("nvidia/libnvcomp/lib")));
    want.extend(files(dir.join("lib64")));
    want.extend(files(dir.join("lib")));
    want.extend(NVCOMP_SONAMES.iter().map(|n| Candidate::Soname(n)));
    want.extend(files(wheel_root.join("nvidia/libnvcomp/lib64")));
    want.extend(files(wheel_root.join("nvidia/libnvcomp/lib")));
    assert_eq!(c, want);
    // A file in the variable comes first, as is; unset or empty means the loader first.
    let file = dir.join("libnvcomp.so.6");
    let c =
        candidates(&SearchInputs { env: Some(file.clone().into_os_string()), wheel_roots: vec![] });
    assert_eq!(c[0], Candidate::File(file));
    assert_eq!(c[1], Candidate::Soname("libnvcomp.so.6"));
    let c = candidates(&SearchInputs { env: Some(OsString::new()), wheel_roots: vec![] });
    assert_eq!(c, NVCOMP_SONAMES.iter().map(|n| Candidate::Soname(n)).collect::<Vec<_>>());
    assert_eq!(Candidate::Soname("libnvcomp.so.6").as_path(), PathBuf::from("libnvcomp.so.6"));
}

#[test]
fn search_inputs_read_the_environment_variable() {
    // The process environment is shared by all tests; only read it.
    let inputs = SearchInputs::from_env();
    assert_eq!(inputs.env, std::env::var_os(crate::search::NVCOMP_ENV));
    let exe_dir = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
    assert_eq!(inputs.wheel_roots.first(), Some(&exe_dir));
}

#[test]
fn nvcomp_status_names_follow_the_header() {
    assert_eq!(nvcomp_status_name(0), "nvcompSuccess");
    assert_eq!(nvcomp_status_name(12), "nvcompErrorCannotDecompress");
    assert_eq!(nvcomp_status_name(10000), "nvcompErrorInternal");
    assert_eq!(nvcomp_status_name(7), "unknown status");
    let e = Error::Nvcomp { call: "x", status: 13 };
    assert!(e.to_string().contains("nvcompErrorBadChecksum"), "{e}");
}

#[test]
fn device_ranges_slice_inside_their_bounds_only() {
    // SAFETY: the range is never used with a device.
    let r = unsafe { DeviceRange::from_raw(0x1000, 64) };
    assert_eq!(r.slice(16, 48).map(|s| (s.ptr(), s.len())), Ok((0x1010, 48)));
    assert!(matches!(r.slice(16, 49), Err(Error::BufferTooSmall { needed: 65, len: 64, .. })));
    assert!(matches!(r.slice(u64::MAX, 2), Err(Error::BufferTooSmall { .. })));
}

#[test]
fn reference_casts_follow_the_host_engine() {
    // The same anchor values as damacy/src/cast.rs's own tests.
    assert_eq!(f32_to_bf16_bits(f32::from_bits(0x3f80_8000)), 0x3f80);
    assert_eq!(f32_to_bf16_bits(f32::from_bits(0x3f81_8000)), 0x3f82);
    assert_eq!(f32_to_bf16_bits(-f32::NAN), 0xffc0);
    assert_eq!(f32_to_f16_bits(65520.0), 0x7c00);
    assert_eq!(f32_to_f16_bits(f32::NAN), 0x7e00);
    let mut rng = Rng::new(3);
    for _ in 0..10_000 {
        let x = f32::from_bits(rng.next_u64() as u32);
        if !x.is_nan() {
            assert_eq!(f32_to_f16_bits(x), half::f16::from_f32(x).to_bits());
            assert_eq!(f32_to_bf16_bits(x), half::bf16::from_f32(x).to_bits());
        }
    }
    // The reference scatter places a 2-D box (damacy's scatter test, reproduced).
    let chunk: Vec<u8> = (0u16..16).flat_map(|v| v.to_ne_bytes()).collect();
    let mut out = vec![0xabu8; 9 * 4];
    scatter(
        DataType::UInt16,
        OutDtype::F32,
        &chunk,
        &[4, 4],
        &[1, 2],
        0,
        &[3, 3],
        &[0, 1],
        &[2, 2],
        &mut out,
    );
    let got: Vec<u32> =
        out.chunks_exact(4).map(|b| u32::from_ne_bytes(b.try_into().unwrap())).collect();
    let p = 0xabab_abab;
    assert_eq!(
        got,
        vec![p, 6f32.to_bits(), 7f32.to_bits(), p, 10f32.to_bits(), 11f32.to_bits(), p, p, p]
    );
}

#[cfg(feature = "cuda")]
#[test]
fn without_a_driver_the_errors_are_typed() {
    use crate::nvcomp::NvcompLib;
    if !gpu_schedule::driver_present() {
        let e: Error = gpu_schedule::CudaBackend::new(0).map(|_| ()).unwrap_err().into();
        assert_eq!(e, Error::Schedule(gpu_schedule::Error::CudaLibraryMissing));
    }
    let tmp = tempfile::tempdir().unwrap();
    let inputs =
        SearchInputs { env: Some(tmp.path().into()), wheel_roots: vec![tmp.path().into()] };
    match NvcompLib::open(&inputs) {
        Err(Error::NvcompMissing { searched }) => {
            let want: Vec<PathBuf> = candidates(&inputs).iter().map(Candidate::as_path).collect();
            assert_eq!(searched, want);
            assert!(searched.contains(&tmp.path().join("libnvcomp.so.6")));
        }
        // Only a system-wide nvCOMP (found by the loader) may satisfy this search.
        Ok(lib) => assert!(NVCOMP_SONAMES.iter().any(|n| lib.path() == std::path::Path::new(n))),
        Err(e) => panic!("unexpected {e}"),
    }
}

#[test]
fn zstd_frame_check_accepts_real_frames_and_names_each_fault() {
    use crate::zstd_frame::check_zstd_frame;
    let mut rng = Rng::new(11);
    let payloads = super::frame_cases::frame_payloads(&mut rng);
    for p in &payloads {
        for level in [1, 3, 19] {
            let frame = zstd::bulk::compress(p, level).unwrap();
            assert_eq!(
                check_zstd_frame(&frame, p.len() as u64),
                Ok(()),
                "len {} level {level}",
                p.len()
            );
            let reason = |f: &[u8], n: u64| match check_zstd_frame(f, n) {
                Err(Error::ZstdFrame { reason, .. }) => reason,
                other => panic!("expected a fault, got {other:?}"),
            };
            assert_eq!(reason(&frame, p.len() as u64 + 1), "content size differs from the chunk's");
            let mut bad = frame.clone();
            bad[0] ^= 0xff;
            assert_eq!(reason(&bad, p.len() as u64), "not a zstd frame (magic)");
            let half = &frame[..frame.len() / 2];
            assert!(check_zstd_frame(half, p.len() as u64).is_err(), "truncated len {}", p.len());
            let mut long = frame.clone();
            long.push(0);
            assert!(check_zstd_frame(&long, p.len() as u64).is_err());
        }
    }
    // With a checksum the 4 trailing bytes belong to the frame.
    let mut c = zstd::bulk::Compressor::new(3).unwrap();
    c.include_checksum(true).unwrap();
    let frame = c.compress(&payloads[0]).unwrap();
    assert_eq!(check_zstd_frame(&frame, payloads[0].len() as u64), Ok(()));
    // No content size declared: refused (nvCOMP could not be held to the chunk's size).
    let mut c = zstd::bulk::Compressor::new(3).unwrap();
    c.include_contentsize(false).unwrap();
    let frame = c.compress(&payloads[0]).unwrap();
    assert!(matches!(
        check_zstd_frame(&frame, payloads[0].len() as u64),
        Err(Error::ZstdFrame { reason: "frame declares no content size", .. })
    ));
    assert!(check_zstd_frame(&[], 0).is_err());
    assert!(check_zstd_frame(&[0x28, 0xb5, 0x2f, 0xfd], 0).is_err());
}
