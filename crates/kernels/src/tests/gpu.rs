//! GPU tests (`_gpu`): every kernel against a host reference on poisoned outputs, and
//! nvCOMP's batched zstd decode. They need a CUDA device; `cargo xtask test-gpu` or the
//! bundle's `run.sh test` runs them.

use gpu_schedule::{Backend, CudaBackend, CudaDeviceMem, CudaStreamHandle};
use zarr::{DataType, OutDtype};

use super::reference::{
    Case, Rng, SHAPES, blosc_shuffled, case, compressible, fill_boxes, fill_reference, fill_specs,
    scatter,
};
use crate::desc::DecodeReport;
use crate::desc::*;
use crate::error::Error;
use crate::mem::{download, upload};
use crate::module::Kernels;
use crate::nvcomp::{NvcompLib, ZstdBatch, ZstdDecoder};
use crate::sync::Arc;

const POISON: u8 = 0xab;

pub(crate) struct Gpu {
    pub(crate) backend: CudaBackend,
    pub(crate) kernels: Arc<Kernels>,
    pub(crate) stream: CudaStreamHandle,
}

pub(crate) fn gpu() -> Gpu {
    let backend = CudaBackend::new(0).expect("a CUDA device (this test needs a GPU)");
    let kernels = Kernels::for_backend(&backend).expect("the kernels compile with NVRTC");
    let stream = backend.create_stream("kernels-test").expect("a stream");
    Gpu { backend, kernels, stream }
}

impl Gpu {
    pub(crate) fn up(&self, bytes: &[u8]) -> CudaDeviceMem {
        upload(&self.backend, bytes).expect("upload")
    }

    pub(crate) fn down(&self, mem: &CudaDeviceMem) -> Vec<u8> {
        self.backend.synchronize(&self.stream).expect("the stream's work succeeds");
        download(&self.backend, mem.into()).expect("download")
    }
}

pub(crate) fn r(m: &CudaDeviceMem) -> DeviceRange {
    m.into()
}

/// Asserts equal bytes, naming the first differing element of size `elem`.
fn assert_same(got: &[u8], want: &[u8], elem: usize, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        let e = i / elem;
        let bad = got.chunks(elem).zip(want.chunks(elem)).filter(|(a, b)| a != b).count();
        panic!(
            "{what}: {bad} elements differ; first is element {e}: got {:02x?}, want {:02x?}",
            &got[e * elem..(e + 1) * elem],
            &want[e * elem..(e + 1) * elem]
        );
    }
}

/// Runs one assemble launch for `case` over device chunks, returning (got, want).
#[allow(clippy::too_many_arguments)]
fn run_assemble(
    g: &Gpu,
    case: &Case,
    src_t: DataType,
    out: OutDtype,
    chunks_dev: &[&CudaDeviceMem],
    shuffle: ShuffleSpec,
    chunks_plain: &[Vec<u8>],
) -> (Vec<u8>, Vec<u8>) {
    let sample_elems: u64 = case.sample_shape.iter().product();
    let out_elems = case.samples * sample_elems;
    let bytes = out_elems as usize * out.size(src_t);
    let placements: Vec<Placement<'_>> = case
        .boxes
        .iter()
        .map(|(c, s, lc, ls, e)| Placement {
            src: chunks_dev[*c].device_ptr(),
            src_dtype: src_t,
            shuffle,
            chunk_shape: &case.chunk_shape,
            in_chunk_lo: lc,
            sample: *s,
            sample_shape: &case.sample_shape,
            in_sample_lo: ls,
            extent: e,
        })
        .collect();
    let packed = pack_placements(&placements, out, out_elems).expect("valid placements");
    let descs = g.up(bytemuck::cast_slice(&packed));
    let dst = g.up(&vec![POISON; bytes]);
    // SAFETY: descriptors packed for this output; chunks live until the sync in `down`.
    unsafe { g.kernels.assemble(&g.stream, out, r(&dst), r(&descs), packed.len() as u32) }
        .expect("assemble launches");
    let got = g.down(&dst);
    // The host twin, on host copies of the same chunk bytes, must write the same bits.
    let host_chunks: Vec<Vec<u8>> = chunks_dev.iter().map(|d| g.down(d)).collect();
    let host_places: Vec<Placement<'_>> = placements
        .iter()
        .zip(&case.boxes)
        .map(|(p, (c, ..))| Placement { src: host_chunks[*c].as_ptr() as u64, ..*p })
        .collect();
    let host_packed = pack_placements(&host_places, out, out_elems).expect("valid placements");
    let mut twin = vec![POISON; bytes];
    // SAFETY: host buffers standing in for device memory, alive for the call.
    unsafe {
        crate::host::assemble(
            out,
            DeviceRange::from_raw(twin.as_mut_ptr() as u64, bytes as u64),
            DeviceRange::from_raw(
                host_packed.as_ptr() as u64,
                std::mem::size_of_val(host_packed.as_slice()) as u64,
            ),
            host_packed.len() as u32,
        )
    }
    .expect("host twin");
    assert!(got == twin, "the host twin of assemble differs from the kernel ({out:?})");
    let mut want = vec![POISON; bytes];
    for (c, s, lc, ls, e) in &case.boxes {
        scatter(
            src_t,
            out,
            &chunks_plain[*c],
            &case.chunk_shape,
            lc,
            *s,
            &case.sample_shape,
            ls,
            e,
            &mut want,
        );
    }
    (got, want)
}

#[test]
fn assemble_every_dtype_rank_and_output_matches_the_host_cast_gpu() {
    let g = gpu();
    let mut rng = Rng::new(1);
    let mut launches = 0;
    for (chunk, sample) in SHAPES {
        let c = case(&mut rng, chunk, sample);
        let elems: u64 = chunk.iter().product();
        for src_t in DataType::ALL {
            let plain: Vec<Vec<u8>> = (0..2).map(|_| rng.elements(src_t, elems as usize)).collect();
            let dev: Vec<CudaDeviceMem> = plain.iter().map(|p| g.up(p)).collect();
            let devs: Vec<&CudaDeviceMem> = dev.iter().collect();
            for out in OutDtype::ALL {
                let (got, want) =
                    run_assemble(&g, &c, src_t, out, &devs, ShuffleSpec::default(), &plain);
                let what = format!("rank {} {src_t:?} -> {out:?}", chunk.len());
                assert_same(&got, &want, out.size(src_t), &what);
                // Sample 2 got no box: it must still be poison.
                let se = sample.iter().product::<u64>() as usize * out.size(src_t);
                assert!(
                    got[2 * se..3 * se].iter().all(|&b| b == POISON),
                    "{what}: sample 2 written"
                );
                launches += 1;
            }
        }
    }
    assert_eq!(launches, 5 * 13 * 4);
}

#[test]
fn unshuffle_matches_blosc_for_byte_and_bit_shuffle_gpu() {
    let g = gpu();
    let mut rng = Rng::new(2);
    let mut seen = [0usize; 3];
    for typesize in [1usize, 2, 3, 4, 8] {
        for shuffle in [zarr::blosc::Shuffle::Byte, zarr::blosc::Shuffle::Bit] {
            for (len, blocksize, split) in
                [(4099usize, 256usize, false), (20_000, 0, true), (777, 128, true)]
            {
                let plain = compressible(&mut rng, len);
                let opts = zarr::blosc::EncodeOptions {
                    compressor: zarr::blosc::Compressor::Zstd,
                    clevel: 5,
                    shuffle,
                    typesize,
                    blocksize,
                    split,
                };
                let (shuffled, spec) = blosc_shuffled(&plain, &opts);
                seen[spec.shuffle as usize] += 1;
                let src = g.up(&shuffled);
                let dst = g.up(&vec![POISON; len]);
                g.kernels
                    .unshuffle(&g.stream, r(&src), r(&dst), len as u64, spec)
                    .expect("unshuffle");
                let got = g.down(&dst);
                assert_same(
                    &got,
                    &plain,
                    1,
                    &format!("typesize {typesize} {shuffle:?} len {len} {spec:?}"),
                );
            }
        }
    }
    assert!(seen[Shuffle::Byte as usize] >= 10 && seen[Shuffle::Bit as usize] >= 10, "{seen:?}");
    // Too-short buffers and a zero typesize are typed errors, not launches.
    let small = g.up(&[0u8; 8]);
    let spec = ShuffleSpec { shuffle: Shuffle::Byte, typesize: 2, blocksize: 8 };
    assert!(matches!(
        g.kernels.unshuffle(&g.stream, r(&small), r(&small), 9, spec),
        Err(Error::BufferTooSmall { needed: 9, len: 8, .. })
    ));
    let zero = ShuffleSpec { typesize: 0, ..spec };
    assert!(matches!(
        g.kernels.unshuffle(&g.stream, r(&small), r(&small), 8, zero),
        Err(Error::BadShuffle { .. })
    ));
}

#[test]
fn assemble_folds_blosc_unshuffle_into_the_gather_gpu() {
    let g = gpu();
    let mut rng = Rng::new(3);
    // 7x11x13 = 1001 elements: blocks whose element count is not a multiple of 8 are
    // stored unshuffled by bit shuffle, and the last block is short.
    let chunk: &[u64] = &[7, 11, 13];
    let sample: &[u64] = &[6, 9, 10];
    let c = case(&mut rng, chunk, sample);
    for src_t in [
        DataType::UInt16,
        DataType::Float32,
        DataType::Float64,
        DataType::UInt8,
        DataType::Int32,
        DataType::BFloat16,
    ] {
        for shuffle in [zarr::blosc::Shuffle::Byte, zarr::blosc::Shuffle::Bit] {
            // The frame's typesize wins over the dtype's: try a mismatched one too.
            for typesize in [src_t.size(), 4] {
                for blocksize in [0usize, 512, 1000] {
                    let bytes = 1001 * src_t.size();
                    let plain: Vec<Vec<u8>> =
                        (0..2).map(|_| compressible(&mut rng, bytes)).collect();
                    let opts = zarr::blosc::EncodeOptions {
                        compressor: zarr::blosc::Compressor::Zstd,
                        clevel: 5,
                        shuffle,
                        typesize,
                        blocksize,
                        split: blocksize == 0,
                    };
                    let shuffled: Vec<(Vec<u8>, ShuffleSpec)> =
                        plain.iter().map(|p| blosc_shuffled(p, &opts)).collect();
                    assert!(shuffled.iter().all(|(_, s)| s == &shuffled[0].1));
                    let dev: Vec<CudaDeviceMem> = shuffled.iter().map(|(b, _)| g.up(b)).collect();
                    let devs: Vec<&CudaDeviceMem> = dev.iter().collect();
                    for out in OutDtype::ALL {
                        let (got, want) =
                            run_assemble(&g, &c, src_t, out, &devs, shuffled[0].1, &plain);
                        let what = format!(
                            "{src_t:?} -> {out:?}, {shuffle:?} typesize {typesize} blocksize {blocksize}"
                        );
                        assert_same(&got, &want, out.size(src_t), &what);
                    }
                }
            }
        }
    }
}

#[test]
fn assemble_mixes_source_dtypes_in_one_launch_gpu() {
    let g = gpu();
    let mut rng = Rng::new(4);
    let shape: &[u64] = &[4, 16];
    let types = [DataType::UInt16, DataType::Float64, DataType::Bool, DataType::Int64];
    let plain: Vec<Vec<u8>> = types.iter().map(|t| rng.elements(*t, 64)).collect();
    let dev: Vec<CudaDeviceMem> = plain.iter().map(|p| g.up(p)).collect();
    let lo = [0u64, 0];
    let placements: Vec<Placement<'_>> = (0..4)
        .map(|i| Placement {
            src: dev[i].device_ptr(),
            src_dtype: types[i],
            shuffle: ShuffleSpec::default(),
            chunk_shape: shape,
            in_chunk_lo: &lo,
            sample: i as u64,
            sample_shape: shape,
            in_sample_lo: &lo,
            extent: shape,
        })
        .collect();
    let packed = pack_placements(&placements, OutDtype::Bf16, 256).unwrap();
    let descs = g.up(bytemuck::cast_slice(&packed));
    let dst = g.up(&[POISON; 512]);
    // SAFETY: packed for this output; chunks live until the sync.
    unsafe { g.kernels.assemble(&g.stream, OutDtype::Bf16, r(&dst), r(&descs), 4) }.unwrap();
    let got = g.down(&dst);
    let mut want = vec![POISON; 512];
    for i in 0..4 {
        scatter(
            types[i],
            OutDtype::Bf16,
            &plain[i],
            shape,
            &lo,
            i as u64,
            shape,
            &lo,
            shape,
            &mut want,
        );
    }
    assert_same(&got, &want, 2, "mixed dtypes -> bf16");
    // The descriptor array must hold `count` entries.
    // SAFETY: refused before launch.
    let e = unsafe { g.kernels.assemble(&g.stream, OutDtype::Bf16, r(&dst), r(&descs), 5) };
    assert!(matches!(e, Err(Error::BufferTooSmall { .. })), "{e:?}");
}

#[test]
fn fill_writes_each_box_and_nothing_else_gpu() {
    let g = gpu();
    let mut rng = Rng::new(5);
    for (value, shape) in [
        (vec![0x5au8], &[7u64, 9][..]),
        (vec![0x34, 0x12], &[3, 4, 5][..]),
        (vec![1, 2, 3, 4], &[33][..]),
        (vec![1, 2, 3, 4, 5, 6, 7, 8], &[2, 3, 2, 3, 2][..]),
    ] {
        let boxes = fill_boxes(&mut rng, shape, &[0, 2, 3]);
        let specs = fill_specs(&boxes, shape);
        let n: u64 = shape.iter().product::<u64>() * 4;
        let size = value.len();
        let packed = pack_fills(&specs, &value, n).unwrap();
        let dboxes = g.up(bytemuck::cast_slice(&packed));
        let dst = g.up(&vec![POISON; n as usize * size]);
        // SAFETY: packed for this output.
        unsafe { g.kernels.fill(&g.stream, size as u32, r(&dst), r(&dboxes), 3) }.unwrap();
        let got = g.down(&dst);
        let want = fill_reference(&boxes, shape, &value, n, POISON);
        // The host twin writes the kernel's bytes (u64 words: aligned for any size).
        let mut twin = vec![u64::from_ne_bytes([POISON; 8]); (n as usize * size).div_ceil(8)];
        // SAFETY: host buffers alive for the call; boxes packed for this output.
        unsafe {
            crate::host::fill(
                size as u32,
                DeviceRange::from_raw(twin.as_mut_ptr() as u64, (twin.len() * 8) as u64),
                DeviceRange::from_raw(
                    packed.as_ptr() as u64,
                    std::mem::size_of_val(&packed[..]) as u64,
                ),
                packed.len() as u32,
            )
        }
        .expect("host twin");
        assert!(
            got[..] == bytemuck::cast_slice::<u64, u8>(&twin)[..got.len()],
            "twin of fill differs"
        );
        assert_same(&got, &want, size, &format!("fill of {size}-byte value over {shape:?}"));
    }
}

#[test]
fn memcpy_batch_copies_every_range_gpu() {
    let g = gpu();
    let mut rng = Rng::new(6);
    let src_bytes = rng.bytes(1 << 20);
    let src = g.up(&src_bytes);
    let dst = g.up(&vec![POISON; 1 << 20]);
    let mut ranges = Vec::new();
    let mut want = vec![POISON; 1 << 20];
    let mut at = 0u64;
    for i in 0..300u64 {
        // Every third range is 16-byte aligned at both ends (the wide path).
        let aligned = i % 3 == 0;
        let len = if aligned { 16 * rng.below(200) } else { rng.below(3000) };
        let from =
            if aligned { 16 * rng.below((1 << 16) - 200) } else { rng.below((1 << 20) - 3000) };
        let to = if aligned { at.next_multiple_of(16) } else { at + rng.below(7) };
        if to + len > 1 << 20 {
            break;
        }
        ranges.push(CopyRange { src: src.device_ptr() + from, dst: dst.device_ptr() + to, len });
        want[to as usize..(to + len) as usize]
            .copy_from_slice(&src_bytes[from as usize..(from + len) as usize]);
        at = to + len;
    }
    assert!(ranges.len() > 200, "{}", ranges.len());
    let dr = g.up(bytemuck::cast_slice(&ranges));
    // SAFETY: every range lies inside `src`/`dst`, destinations are disjoint.
    unsafe { g.kernels.memcpy_batch(&g.stream, r(&dr), ranges.len() as u32) }.unwrap();
    assert_same(&g.down(&dst), &want, 1, "batched memcpy");
}

pub(crate) fn u64s(v: &[u64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_ne_bytes()).collect()
}

#[test]
fn status_reduction_finds_the_first_failure_and_counts_gpu() {
    let g = gpu();
    let n = 5000usize;
    let expected: Vec<u64> = (0..n as u64).map(|i| 1000 + i).collect();
    let report = g.up(&[POISON; 8]);
    let exp_dev = g.up(&u64s(&expected));
    let reduce = |statuses: &[i32], actual: &[u64], count: u32| {
        let s = g.up(&statuses.iter().flat_map(|x| x.to_ne_bytes()).collect::<Vec<u8>>());
        let a = g.up(&u64s(actual));
        g.kernels.status_reduce(&g.stream, r(&s), r(&a), r(&exp_dev), count, r(&report)).unwrap();
        DecodeReport::from_bytes(g.down(&report).try_into().unwrap())
    };
    let mut statuses = vec![0i32; n];
    let mut actual = expected.clone();
    assert_eq!(
        reduce(&statuses, &actual, n as u32),
        DecodeReport { first_failing: None, failures: 0 }
    );
    statuses[4321] = 12;
    statuses[77] = 1000;
    actual[1234] -= 1;
    actual[4999] += 1;
    assert_eq!(
        reduce(&statuses, &actual, n as u32),
        DecodeReport { first_failing: Some(77), failures: 4 }
    );
    // Only the first `count` chunks are looked at; the report is reset every time.
    assert_eq!(reduce(&statuses, &actual, 77), DecodeReport { first_failing: None, failures: 0 });
    assert!(matches!(
        g.kernels.status_reduce(&g.stream, r(&report), r(&report), r(&report), 3, r(&report)),
        Err(Error::BufferTooSmall { what: "statuses", needed: 12, len: 8, .. })
    ));
}

#[test]
fn kernels_compile_once_per_device_for_its_architecture_gpu() {
    let g = gpu();
    let again = Kernels::for_backend(&g.backend).unwrap();
    assert!(Arc::ptr_eq(&g.kernels, &again));
    let (major, minor) = g.backend.context().compute_capability().unwrap();
    assert_eq!(g.kernels.arch(), format!("--gpu-architecture=compute_{major}{minor}"));
}

/// Compresses `chunks` chunks of `chunk_bytes` each (u16-like data, ~1.3x) with zstd.
pub(crate) fn zstd_chunks(
    rng: &mut Rng,
    chunks: usize,
    chunk_bytes: usize,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut plain = Vec::with_capacity(chunks);
    let mut comp = Vec::with_capacity(chunks);
    for c in 0..chunks {
        let mut p = Vec::with_capacity(chunk_bytes);
        while p.len() < chunk_bytes {
            let w = rng.next_u64();
            for k in 0..4 {
                let v = ((w >> (16 * k)) & 0x0fff) as u16 + (c as u16 & 0xff);
                p.extend_from_slice(&v.to_le_bytes());
            }
        }
        p.truncate(chunk_bytes);
        comp.push(zstd::bulk::compress(&p, 3).expect("zstd compress"));
        plain.push(p);
    }
    (plain, comp)
}

struct Decoded {
    out: Vec<u8>,
    statuses: Vec<i32>,
    actual: Vec<u64>,
    report: DecodeReport,
}

/// Decodes `comp` (each to at most `chunk_bytes`) in one nvCOMP batch and reduces the
/// statuses on the GPU.
fn nvcomp_decode(g: &Gpu, comp: &[Vec<u8>], chunk_bytes: usize) -> Decoded {
    let lib = NvcompLib::global().expect("nvCOMP (set DAMACY_NVCOMP_LIB)");
    let align = lib.alignments().expect("alignments");
    assert!(align.input <= 256 && align.output <= 256, "{align:?}");
    let n = comp.len();
    let dec = ZstdDecoder::new(Arc::clone(&lib), &g.backend, n, chunk_bytes).expect("decoder");
    // All frames in one buffer, each at a 16-byte aligned offset.
    let mut packed = Vec::new();
    let mut offsets = Vec::with_capacity(n);
    for c in comp {
        packed.resize(packed.len().next_multiple_of(16), 0);
        offsets.push(packed.len() as u64);
        packed.extend_from_slice(c);
    }
    let comp_dev = g.up(&packed);
    let out_dev = g.up(&vec![POISON; n * chunk_bytes]);
    let comp_ptrs: Vec<u64> = offsets.iter().map(|o| comp_dev.device_ptr() + o).collect();
    let comp_bytes: Vec<u64> = comp.iter().map(|c| c.len() as u64).collect();
    let caps = vec![chunk_bytes as u64; n];
    let out_ptrs: Vec<u64> =
        (0..n as u64).map(|i| out_dev.device_ptr() + i * chunk_bytes as u64).collect();
    let (cp, cb, ca, op) = (
        g.up(&u64s(&comp_ptrs)),
        g.up(&u64s(&comp_bytes)),
        g.up(&u64s(&caps)),
        g.up(&u64s(&out_ptrs)),
    );
    let actual = g.up(&vec![POISON; n * 8]);
    let statuses = g.up(&vec![POISON; n * 4]);
    let report = g.up(&[POISON; 8]);
    let batch = ZstdBatch {
        chunks: n,
        max_chunk_bytes: chunk_bytes,
        comp_ptrs: r(&cp),
        comp_bytes: r(&cb),
        out_capacity: r(&ca),
        out_ptrs: r(&op),
        out_actual: r(&actual),
        statuses: r(&statuses),
    };
    // SAFETY: every pointer names a frame or output slot allocated above, kept until the
    // synchronizing downloads below.
    unsafe { dec.decode(&g.stream, &batch) }.expect("nvCOMP accepts the batch");
    g.kernels
        .status_reduce(&g.stream, r(&statuses), r(&actual), r(&ca), n as u32, r(&report))
        .unwrap();
    let report = DecodeReport::from_bytes(g.down(&report).try_into().unwrap());
    let statuses: Vec<i32> = g
        .down(&statuses)
        .chunks_exact(4)
        .map(|b| i32::from_ne_bytes(b.try_into().unwrap()))
        .collect();
    let actual: Vec<u64> = g
        .down(&actual)
        .chunks_exact(8)
        .map(|b| u64::from_ne_bytes(b.try_into().unwrap()))
        .collect();
    // Too large a batch is refused before nvCOMP sees it.
    let big = ZstdBatch { chunks: n + 1, ..batch };
    // SAFETY: refused before launch.
    assert!(matches!(unsafe { dec.decode(&g.stream, &big) }, Err(Error::BatchTooLarge { .. })));
    Decoded { out: g.down(&out_dev), statuses, actual, report }
}

#[test]
fn nvcomp_decodes_a_batch_of_2048_chunks_of_256_kib_gpu() {
    let g = gpu();
    let mut rng = Rng::new(7);
    let chunk_bytes = 256 << 10;
    let (plain, comp) = zstd_chunks(&mut rng, 2048, chunk_bytes);
    let total: usize = comp.iter().map(Vec::len).sum();
    assert!(total < 2048 * chunk_bytes * 9 / 10, "the data must compress (got {total} bytes)");
    let d = nvcomp_decode(&g, &comp, chunk_bytes);
    assert!(d.statuses.iter().all(|&s| s == 0), "statuses {:?}", &d.statuses[..8]);
    assert!(d.actual.iter().all(|&a| a == chunk_bytes as u64));
    assert_eq!(d.report, DecodeReport { first_failing: None, failures: 0 });
    for (i, p) in plain.iter().enumerate() {
        assert_same(&d.out[i * chunk_bytes..(i + 1) * chunk_bytes], p, 1, &format!("chunk {i}"));
    }
}

// Fault tests. nvCOMP 6.0.0.12 does not validate frames (seen on the H200: a broken magic
// decoded with success, an oversized frame wrote past its output into the next chunk's,
// a truncated frame faulted the context), so corrupt frames are caught on the host by
// `check_zstd_frame` and never reach nvCOMP; a rejected frame is replaced by a frame of
// one byte, which fails the status reduction's size check. Named
// `zstd_*` to run last of the GPU tests (libtest orders by name).

/// Runs a 64-chunk batch in which only chunk `bad` was tampered with by `tamper`, and
/// checks that exactly that chunk is reported and every other decodes correctly.
fn one_bad_chunk(seed: u64, bad: usize, tamper: impl FnOnce(&mut Vec<u8>)) {
    let g = gpu();
    let mut rng = Rng::new(seed);
    let chunk_bytes = 64 << 10;
    let (plain, mut comp) = zstd_chunks(&mut rng, 64, chunk_bytes);
    tamper(&mut comp[bad]);
    let rejected: Vec<usize> = (0..comp.len())
        .filter(|&i| crate::check_zstd_frame(&comp[i], chunk_bytes as u64).is_err())
        .collect();
    assert_eq!(rejected, vec![bad]);
    comp[bad] = zstd::bulk::compress(&[0], 3).expect("stand-in frame");
    let d = nvcomp_decode(&g, &comp, chunk_bytes);
    assert_eq!((d.statuses[bad], d.actual[bad]), (0, 1), "the stand-in decodes to one byte");
    assert_eq!(d.report, DecodeReport { first_failing: Some(bad as u32), failures: 1 });
    for (i, p) in plain.iter().enumerate().filter(|(i, _)| *i != bad) {
        assert_eq!(d.statuses[i], 0, "chunk {i}");
        assert_same(&d.out[i * chunk_bytes..(i + 1) * chunk_bytes], p, 1, &format!("chunk {i}"));
    }
}

#[test]
fn zstd_broken_magic_fails_only_its_chunk_gpu() {
    one_bad_chunk(7, 3, |frame| frame[..4].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]));
}

#[test]
fn zstd_oversized_frame_fails_only_its_chunk_gpu() {
    one_bad_chunk(8, 17, |frame| {
        let mut rng = Rng::new(99);
        let (_, big) = zstd_chunks(&mut rng, 1, 128 << 10);
        *frame = big.into_iter().next().unwrap_or_default();
    });
}

#[test]
fn zstd_truncated_frame_fails_only_its_chunk_gpu() {
    one_bad_chunk(9, 40, |frame| {
        let half = frame.len() / 2;
        frame.truncate(half);
    });
}
