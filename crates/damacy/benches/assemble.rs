//! Criterion bench of the host cast loops per source and output dtype, through
//! `cast::scatter`: one full 32×64×64 chunk placed into a 128³ sample, as in the `default`
//! scenario. (The host engine gathers output rows instead, ninth session, running the same
//! `cast_run` on each row piece; this measures the loops, in cache.)
//!
//! Run: `cargo bench -p damacy --bench assemble -- --warm-up-time 1 --measurement-time 2`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use damacy::cast::{Scatter, scatter};
use damacy::{Aabb, DataType, OutDtype};

fn assemble(c: &mut Criterion) {
    let chunk_shape = [32u64, 64, 64];
    let sample_shape = [128u64, 128, 128];
    let elems: u64 = chunk_shape.iter().product();
    let in_chunk = Aabb::from_shape(&chunk_shape).expect("box");
    let in_sample = Aabb::new(vec![32, 64, 0], vec![64, 128, 64]).expect("box");
    let mut group = c.benchmark_group("assemble_32x64x64_into_128cubed");
    group.throughput(Throughput::Elements(elems));
    for src in
        [DataType::UInt8, DataType::UInt16, DataType::Int16, DataType::Float32, DataType::Float64]
    {
        let chunk = vec![0x3cu8; elems as usize * src.size()];
        for out in [OutDtype::F32, OutDtype::Bf16, OutDtype::F16, OutDtype::Native] {
            let out_size = out.size(src);
            let mut dst = vec![0u8; sample_shape.iter().product::<u64>() as usize * out_size];
            let sc = Scatter {
                src_dtype: src,
                out,
                chunk_shape: &chunk_shape,
                in_chunk: &in_chunk,
                sample_shape: &sample_shape,
                in_sample: &in_sample,
            };
            group.bench_function(format!("{src}_to_{out:?}"), |b| {
                b.iter(|| scatter(&sc, black_box(&chunk), &mut dst))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, assemble);
criterion_main!(benches);
