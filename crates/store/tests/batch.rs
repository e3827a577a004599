//! Batched reads: caller buffers and sub-ranges, submission order, range splitting,
//! and back-pressure (`Again` with the requests handed back; blocking `submit`).

use std::time::Duration;

use store::{FsStore, FsStoreConfig, OpKind, ReadRequest, Store, TrySubmitError, downcast_buf};

use crate::{byte, write_file};

#[test]
fn reads_land_in_a_sub_range_of_the_caller_buffer_and_it_comes_back() {
    let d = tempfile::tempdir().unwrap();
    write_file(d.path(), "f", 5, 10_000);
    let s = FsStore::new(d.path(), FsStoreConfig { io_threads: 2, ..Default::default() }).unwrap();
    let buf: Box<[u8]> = vec![0xAAu8; 1000].into_boxed_slice();
    let r = s.submit(vec![ReadRequest::into_buf("f", 4321, 500, Box::new(buf), 100)]).unwrap();
    let mut r = r.wait();
    let res = r.pop().unwrap();
    assert_eq!((res.key.as_str(), res.offset, res.len, res.buf_offset), ("f", 4321, 500, 100));
    assert_eq!(res.bytes(), Ok(500));
    let buf = downcast_buf::<Box<[u8]>>(res.buf).unwrap();
    assert!(buf[..100].iter().all(|&b| b == 0xAA));
    assert!(buf[600..].iter().all(|&b| b == 0xAA));
    assert!((0..500).all(|i| buf[100 + i] == byte(5, 4321 + i as u64)));
}

#[test]
fn results_come_back_in_submission_order() {
    let d = tempfile::tempdir().unwrap();
    for f in 0..5 {
        write_file(d.path(), &format!("f{f}"), f, 4096);
    }
    let s = FsStore::new(d.path(), FsStoreConfig { io_threads: 4, ..Default::default() }).unwrap();
    let reads: Vec<_> =
        (0..100u64).map(|i| ReadRequest::to_vec(format!("f{}", i % 5), i * 13, 64)).collect();
    let t = s.submit(reads).unwrap();
    let results = t.wait();
    assert_eq!(results.len(), 100);
    for (i, r) in results.into_iter().enumerate() {
        let i = i as u64;
        assert_eq!((r.key.clone(), r.offset), (format!("f{}", i % 5), i * 13));
        let v = downcast_buf::<Vec<u8>>(r.buf).unwrap();
        assert!(v.iter().enumerate().all(|(k, &b)| b == byte(i % 5, i * 13 + k as u64)));
    }
}

#[test]
fn large_reads_split_into_parts_and_zero_length_reads_do_no_io() {
    let d = tempfile::tempdir().unwrap();
    write_file(d.path(), "big", 6, 1 << 20);
    let cfg = FsStoreConfig { io_threads: 4, max_part: 4096, min_part: 1024, ..Default::default() };
    let s = FsStore::new(d.path(), cfg).unwrap();
    let r =
        s.submit(vec![ReadRequest::to_vec("big", 0, 1 << 20), ReadRequest::to_vec("big", 7, 0)]);
    let r = r.unwrap().wait();
    assert_eq!(r[0].bytes(), Ok(1 << 20));
    assert_eq!(r[1].bytes(), Ok(0));
    let st = s.stats();
    assert_eq!(st.ops(OpKind::Part), 256, "1 MiB in 4 KiB parts; the empty read has none");
    assert_eq!(st.bytes_read, 1 << 20);
    let v = downcast_buf::<Vec<u8>>(r.into_iter().next().unwrap().buf).unwrap();
    assert!(v.iter().enumerate().all(|(i, &b)| b == byte(6, i as u64)));
    // A split read that runs past end of file counts only the bytes that exist.
    let r = s.submit(vec![ReadRequest::to_vec("big", (1 << 20) - 5000, 20_000)]).unwrap().wait();
    assert_eq!(r[0].bytes(), Ok(5000));
    // read_all splits too, and returns exactly the file.
    assert_eq!(s.read_all("big").unwrap().len(), 1 << 20);
}

/// A FIFO blocks `open` until a writer appears: it pins the only I/O thread so the queue
/// fills deterministically.
fn blocked_store(dir: &std::path::Path, queue_depth: usize) -> FsStore {
    let fifo = dir.join("fifo");
    let ok = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success();
    assert!(ok, "mkfifo failed");
    FsStore::new(dir, FsStoreConfig { io_threads: 1, queue_depth, ..Default::default() }).unwrap()
}

fn unblock(dir: &std::path::Path) {
    // Opening the write end releases the reader's open; closing it at once is fine.
    drop(std::fs::OpenOptions::new().write(true).open(dir.join("fifo")).unwrap());
}

#[test]
fn full_queue_is_again_with_the_requests_back_not_an_error() {
    let d = tempfile::tempdir().unwrap();
    write_file(d.path(), "f", 7, 1000);
    let s = blocked_store(d.path(), 2);
    let stuck = s.submit(vec![ReadRequest::to_vec("fifo", 0, 1)]).unwrap();
    // Wait until the I/O thread has taken the FIFO job (the queue is then empty).
    while s.stats().fd_misses == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let queued =
        s.try_submit(vec![ReadRequest::to_vec("f", 0, 10), ReadRequest::to_vec("f", 10, 10)]);
    let queued = queued.unwrap();
    let refused =
        s.try_submit(vec![ReadRequest::to_vec("f", 20, 10), ReadRequest::to_vec("f", 30, 10)]);
    let back = match refused {
        Err(TrySubmitError::Again(back)) => back,
        other => panic!("expected Again, got {other:?}"),
    };
    assert_eq!(back.len(), 2);
    assert_eq!((back[0].key.as_str(), back[0].offset, back[0].len), ("f", 20, 10));
    assert_eq!((back[1].key.as_str(), back[1].offset, back[1].len), ("f", 30, 10));
    assert_eq!(s.stats().again, 1);
    assert!(!stuck.is_done() && !queued.is_done());

    // A blocking submit waits for room rather than failing.
    std::thread::scope(|sc| {
        let h = sc.spawn(|| s.submit(back).unwrap().wait());
        std::thread::sleep(Duration::from_millis(50));
        assert!(!h.is_finished(), "submit must block while the queue is full");
        unblock(d.path());
        let r = h.join().unwrap();
        assert_eq!(r[1].bytes(), Ok(10));
        assert_eq!(
            *downcast_buf::<Vec<u8>>(r.into_iter().nth(1).unwrap().buf).unwrap(),
            (30..40).map(|i| byte(7, i)).collect::<Vec<_>>()
        );
    });
    // The FIFO cannot be pread: a typed error with errno ESPIPE, not a hang.
    let r = stuck.wait();
    assert!(
        matches!(&r[0].outcome, Err(store::Error::Io { raw_os_error: Some(29), .. })),
        "{:?}",
        r[0]
    );
    assert!(queued.wait().iter().all(|r| r.bytes() == Ok(10)));
}
