//! FsStore tests that need an injected opener: where opens run, mocked OS errors, and
//! single-flight opens counted by the opener itself.

use super::*;
use std::collections::HashMap;
use std::fs::File;
use std::time::Duration;

/// Opens real files; records the opening thread's name and counts; can fail with an errno.
#[derive(Debug, Default)]
struct Spy {
    threads: std::sync::Mutex<Vec<String>>,
    opens: std::sync::Mutex<HashMap<PathBuf, usize>>,
    delay: Duration,
    errno: Option<i32>,
}

#[derive(Debug)]
struct SpyRef(std::sync::Arc<Spy>);

impl Opener for SpyRef {
    fn open(&self, path: &Path) -> Result<File> {
        let s = &self.0;
        let name = std::thread::current().name().unwrap_or("").to_owned();
        s.threads.lock().unwrap().push(name);
        *s.opens.lock().unwrap().entry(path.to_owned()).or_default() += 1;
        std::thread::sleep(s.delay);
        if let Some(errno) = s.errno {
            return Err(Error::from_io(
                IoOp::Open,
                path,
                &std::io::Error::from_raw_os_error(errno),
            ));
        }
        StdOpener.open(path)
    }
}

fn store_with(spy: Spy, cfg: FsStoreConfig) -> (tempfile::TempDir, FsStore, std::sync::Arc<Spy>) {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..4 {
        let data: Vec<u8> = (0..100_000u32).map(|j| (j * 7 + i) as u8).collect();
        std::fs::write(dir.path().join(format!("f{i}")), data).unwrap();
    }
    let spy = std::sync::Arc::new(spy);
    let s =
        FsStore::with_opener(dir.path().to_owned(), cfg, Box::new(SpyRef(spy.clone()))).unwrap();
    (dir, s, spy)
}

#[test]
fn opens_happen_on_io_threads_never_the_caller() {
    let (_d, s, spy) =
        store_with(Spy::default(), FsStoreConfig { io_threads: 3, ..Default::default() });
    let mut buf = [0u8; 10];
    assert_eq!(s.read("f0", 0, &mut buf).unwrap(), 10);
    assert_eq!(s.read_all("f1").unwrap().len(), 100_000);
    let t =
        s.submit(vec![ReadRequest::to_vec("f2", 5, 5), ReadRequest::to_vec("f3", 0, 1)]).unwrap();
    assert!(t.wait().iter().all(|r| r.outcome.is_ok()));
    let threads = spy.threads.lock().unwrap().clone();
    assert_eq!(threads.len(), 4);
    assert!(threads.iter().all(|n| n.starts_with("store-io-")), "{threads:?}");
}

#[test]
fn a_sync_read_of_an_open_file_skips_the_io_threads_and_copies_nothing_extra() {
    let (_d, s, spy) =
        store_with(Spy::default(), FsStoreConfig { io_threads: 2, ..Default::default() });
    let mut buf = [0u8; 16];
    // First read: the open (and this read) go through the I/O threads.
    assert_eq!(s.read("f0", 100, &mut buf).unwrap(), 16);
    assert_eq!(s.stats().submitted_reads, 1);
    let want: Vec<u8> = (100..116u32).map(|j| (j * 7) as u8).collect();
    assert_eq!(buf.to_vec(), want);
    // Second read of the now-open file: on this thread, not submitted, same bytes.
    let mut buf2 = [0u8; 16];
    assert_eq!(s.read("f0", 100, &mut buf2).unwrap(), 16);
    assert_eq!(buf2, buf);
    let st = s.stats();
    assert_eq!(st.submitted_reads, 1, "{st:?}");
    assert_eq!(st.ops(OpKind::Part), 2);
    assert_eq!(st.fd_hits, 1);
    // Short reads past the end still report the bytes that exist.
    let mut tail = [0xAAu8; 8];
    assert_eq!(s.read("f0", 99_996, &mut tail).unwrap(), 4);
    assert_eq!(spy.threads.lock().unwrap().len(), 1, "one open, on an I/O thread");
}

#[test]
fn permission_denied_is_a_typed_error_with_the_path_and_errno() {
    let spy = Spy { errno: Some(13), ..Default::default() };
    let (d, s, _) = store_with(spy, FsStoreConfig { io_threads: 2, ..Default::default() });
    let mut buf = [0u8; 4];
    let want = Error::Io {
        op: IoOp::Open,
        path: d.path().join("f0"),
        kind: std::io::ErrorKind::PermissionDenied,
        raw_os_error: Some(13),
    };
    assert_eq!(s.read("f0", 0, &mut buf), Err(want.clone()));
    let r = s.submit(vec![ReadRequest::to_vec("f0", 0, 4)]).unwrap().wait();
    assert_eq!(r[0].outcome, Err(want));
    assert!(s.stats().errors >= 2);
}

#[test]
fn many_threads_reading_one_file_cause_one_open() {
    let spy = Spy { delay: Duration::from_millis(30), ..Default::default() };
    let cfg = FsStoreConfig { io_threads: 8, max_part: 1000, min_part: 500, ..Default::default() };
    let (d, s, spy) = store_with(spy, cfg);
    // 16 caller threads, each a batch of ranged reads split into many parts: dozens of
    // I/O-thread acquires of one file at once.
    std::thread::scope(|sc| {
        for t in 0..16u64 {
            let s = &s;
            sc.spawn(move || {
                let reads =
                    (0..4).map(|k| ReadRequest::to_vec("f0", t * 1000 + k * 7, 5000)).collect();
                for r in s.submit(reads).unwrap().wait() {
                    assert_eq!(r.bytes(), Ok(5000));
                }
            });
        }
    });
    assert_eq!(spy.opens.lock().unwrap()[&d.path().join("f0")], 1);
    let st = s.stats();
    assert_eq!(st.opens, 1);
    assert!(st.fd_open_waits >= 1, "{st:?}");
    assert_eq!(st.fd_hits + st.fd_misses, st.ops(OpKind::Part));
}
