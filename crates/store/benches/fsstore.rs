//! FsStore throughput: random 256 KiB reads of a 256 MiB file that sits in the page cache,
//! in batches of 64, with 1, 2, 4 and 8 I/O threads.

use std::io::Write;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use store::{FsStore, FsStoreConfig, IoBuf, ReadRequest, Store, downcast_buf};

const FILE_LEN: u64 = 256 << 20;
const READ: usize = 256 << 10;
const BATCH: usize = 64;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("data.bin");
    {
        let mut f = std::fs::File::create(&path).expect("create");
        let chunk: Vec<u8> =
            (0..(1u32 << 20)).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        for _ in 0..(FILE_LEN >> 20) {
            f.write_all(&chunk).expect("write");
        }
    }
    // Warm the page cache so the benchmark measures the store, not the disk.
    std::hint::black_box(std::fs::read(&path).expect("read back"));

    let mut group = c.benchmark_group("fsstore_random_256k");
    group.throughput(Throughput::Bytes((READ * BATCH) as u64));
    group.sample_size(10);
    group.warm_up_time(std::time::Duration::from_millis(500));
    group.measurement_time(std::time::Duration::from_secs(2));
    for threads in [1usize, 2, 4, 8] {
        let cfg = FsStoreConfig { io_threads: threads, ..Default::default() };
        let s = FsStore::new(dir.path(), cfg).expect("store");
        let mut bufs: Vec<Box<[u8]>> =
            (0..BATCH).map(|_| vec![0u8; READ].into_boxed_slice()).collect();
        let mut rng = 0x1234_5678u64;
        group.bench_function(BenchmarkId::from_parameter(threads), |b| {
            b.iter(|| {
                let reads = bufs
                    .drain(..)
                    .map(|buf| {
                        rng = rng
                            .wrapping_mul(6_364_136_223_846_793_005)
                            .wrapping_add(1_442_695_040_888_963_407);
                        let blocks = (FILE_LEN - READ as u64) / 4096;
                        let off = ((rng >> 33) % blocks) * 4096;
                        ReadRequest::into_buf(
                            "data.bin",
                            off,
                            READ,
                            Box::new(buf) as Box<dyn IoBuf>,
                            0,
                        )
                    })
                    .collect();
                for r in s.submit(reads).expect("submit").wait() {
                    assert_eq!(r.bytes(), Ok(READ));
                    bufs.push(*downcast_buf::<Box<[u8]>>(r.buf).expect("same buffer type"));
                }
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
