//! Criterion benches for the format hot paths: shard-index decode, blosc frame decode, and
//! `decode_chunk` of a zstd chunk (the host engine's inner loop).
//!
//! Run: `cargo bench -p zarr --bench format -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use zarr::blosc::{self, Compressor, EncodeOptions, Shuffle};
use zarr::codec::CodecChain;
use zarr::{ChunkLocation, ShardIndex, ShardingCodec};

fn shard_index(c: &mut Criterion) {
    let mut group = c.benchmark_group("shard_index_decode");
    for n in [512u64, 32_768] {
        let codec = ShardingCodec::new(vec![64, 64], CodecChain::bytes(None));
        // Every fourth chunk empty, the rest packed back to back.
        let mut offset = 0;
        let entries: Vec<ChunkLocation> = (0..n)
            .map(|i| {
                if i % 4 == 3 {
                    ChunkLocation::Empty
                } else {
                    let nbytes = 1000 + i % 97;
                    let at = offset;
                    offset += nbytes;
                    ChunkLocation::Range { offset: at, nbytes }
                }
            })
            .collect();
        let index = ShardIndex::encode(&codec, &entries).expect("encode index");
        let shard_len = offset + index.len() as u64;
        group.throughput(Throughput::Bytes(index.len() as u64));
        group.bench_function(format!("{n}_entries_crc32c"), |b| {
            b.iter(|| ShardIndex::decode(&codec, n, shard_len, black_box(&index)).expect("decode"))
        });
    }
    group.finish();
}

/// 128 Ki u16 samples (256 KiB): a slow sine plus a little noise, like a microscope tile.
fn smooth_noise_u16() -> Vec<u8> {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    (0..128 * 1024)
        .flat_map(|i: u32| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let smooth = 20_000.0 + 8_000.0 * (f64::from(i) / 700.0).sin();
            let v = (smooth + (x % 64) as f64 - 32.0) as u16;
            v.to_le_bytes()
        })
        .collect()
}

fn blosc_decode(c: &mut Criterion) {
    let data = smooth_noise_u16();
    let mut group = c.benchmark_group("blosc_decode_256KiB_u16");
    group.throughput(Throughput::Bytes(data.len() as u64));
    let cases = [
        ("zstd_byteshuffle", Compressor::Zstd, Shuffle::Byte, false),
        ("zstd_bitshuffle", Compressor::Zstd, Shuffle::Bit, false),
        ("lz4_byteshuffle", Compressor::Lz4, Shuffle::Byte, true),
        ("blosclz_byteshuffle", Compressor::BloscLz, Shuffle::Byte, true),
    ];
    for (name, compressor, shuffle, split) in cases {
        let opts =
            EncodeOptions { compressor, clevel: 5, shuffle, typesize: 2, blocksize: 0, split };
        let frame = blosc::encode(&data, &opts).expect("encode");
        let lay = blosc::layout(&frame).expect("layout");
        eprintln!(
            "{name}: {} -> {} bytes, {} blocks of {}, split {}",
            data.len(),
            frame.len(),
            lay.nblocks,
            lay.blocksize,
            lay.split
        );
        // Checked before timing: with a name filter criterion may skip the timed run.
        let mut out = vec![0u8; data.len()];
        blosc::decode(&frame, &mut out).expect("decode");
        assert_eq!(out, data);
        group.bench_function(name, |b| {
            b.iter(|| blosc::decode(black_box(&frame), &mut out).expect("decode"))
        });
    }
    group.finish();
}

/// `decode_chunk` of a 32×64×64 u16 chunk (256 KiB, the `default` scenario's chunk)
/// through `bytes` + `zstd` level 3: the host engine's per-chunk decode cost.
fn zstd_chunk_decode(c: &mut Criterion) {
    let data = smooth_noise_u16();
    let chain =
        CodecChain::little_endian(vec![zarr::BytesToBytes::Zstd { level: 3, checksum: false }]);
    let repr = zarr::ChunkRepr {
        shape: vec![32, 64, 64],
        data_type: zarr::DataType::UInt16,
        fill_value: zarr::FillValue::zero(zarr::DataType::UInt16),
    };
    let encoded = zarr::encode_chunk(&chain, &repr, &data).expect("encode");
    let mut out = vec![0u8; data.len()];
    let mut group = c.benchmark_group("decode_chunk_256KiB_u16");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("zstd3", |b| {
        b.iter(|| zarr::decode_chunk(&chain, &repr, black_box(&encoded), &mut out).expect("decode"))
    });
    group.finish();
}

criterion_group!(benches, shard_index, blosc_decode, zstd_chunk_decode);
criterion_main!(benches);
