//! GPU tests (`_gpu`) of the cuFile binding: the completion contract behind a host-side
//! barrier, 100 pipelines on fresh streams, and teardown with a read in flight. They need
//! a GPU and libcufile (`DAMACY_CUFILE_LIB`: the library, or an unpacked `nvidia-cufile`
//! wheel or site-packages); without nvidia-fs, run them with
//! `CUFILE_FORCE_COMPAT_MODE=true`. Test files go to `DAMACY_GDS_TEST_DIR` (default: the
//! temp folder; point it at a disk-backed folder if cuFile refuses tmpfs). They take one
//! lock, so they never overlap.

use std::fs::File;
use std::path::PathBuf;

use gpu_schedule::{Backend, CudaBackend, CudaStreamHandle};

use super::gpu::{gpu, r};
use super::reference::Rng;
use crate::cufile::{CufileLib, Driver, FileHandle, RegisteredBuffer, RegisteredStream};
use crate::desc::DeviceRange;
use crate::mem::{download, upload};
use crate::search::{CUFILE, SearchInputs};
use crate::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

const POISON: u8 = 0xab;

/// One cuFile test at a time: the driver is process-wide state in libcufile.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A library instance of this test's own, so its counts are this test's calls.
fn lib() -> Arc<CufileLib> {
    let lib = CufileLib::open(&SearchInputs::from_env_for(&CUFILE))
        .expect("libcufile (set DAMACY_CUFILE_LIB to nvidia-cufile's libcufile.so.0)");
    Arc::new(lib)
}

/// A file of `bytes` in `DAMACY_GDS_TEST_DIR` (default: the temp folder).
fn test_file(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let base =
        std::env::var_os("DAMACY_GDS_TEST_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = tempfile::tempdir_in(base).expect("a temp folder");
    let path = dir.path().join("data.bin");
    std::fs::write(&path, bytes).expect("write the test file");
    (dir, path)
}

/// A host-side barrier on a stream: a host function that blocks the stream until the
/// test opens it (a condition variable, no timing).
#[derive(Debug, Default)]
struct Barrier {
    open: Mutex<bool>,
    changed: Condvar,
}

impl Barrier {
    fn park(backend: &CudaBackend, stream: &CudaStreamHandle) -> Arc<Self> {
        let b = Arc::new(Self::default());
        let held = Arc::clone(&b);
        backend
            .enqueue_host(
                stream,
                Box::new(move || {
                    let g = held.open.lock().unwrap_or_else(PoisonError::into_inner);
                    drop(
                        held.changed.wait_while(g, |o| !*o).unwrap_or_else(PoisonError::into_inner),
                    );
                    Ok(())
                }),
            )
            .expect("the barrier is enqueued");
        b
    }

    fn lift(&self) {
        *self.open.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.changed.notify_all();
    }

    /// Runs `f` (which must not wait for the parked stream) with a watchdog that lifts
    /// the barrier if `f` has not returned within two minutes, so that a cuFile that
    /// blocks on the parked stream fails the test instead of hanging it. The test's
    /// outcome never depends on the timeout: a test that needs it fails.
    fn guard<T>(&self, what: &str, f: impl FnOnce() -> T) -> T {
        let done = (Mutex::new(false), Condvar::new());
        let fired = std::thread::scope(|s| {
            let dog = s.spawn(|| {
                let g = done.0.lock().unwrap_or_else(PoisonError::into_inner);
                let (_g, t) = done
                    .1
                    .wait_timeout_while(g, std::time::Duration::from_secs(120), |d| !*d)
                    .unwrap_or_else(PoisonError::into_inner);
                if t.timed_out() {
                    self.lift();
                }
                t.timed_out()
            });
            let out = f();
            *done.0.lock().unwrap_or_else(PoisonError::into_inner) = true;
            done.1.notify_all();
            (out, dog.join().expect("watchdog"))
        });
        assert!(!fired.1, "{what} waited for the parked stream (the watchdog lifted it)");
        fired.0
    }
}

fn slice(buf: &RegisteredBuffer, offset: u64, len: u64) -> DeviceRange {
    r(buf.mem()).slice(offset, len).expect("inside the buffer")
}

#[test]
fn cufile_read_is_done_only_after_it_retired_on_its_stream_gpu() {
    let _serial = serial();
    let g = gpu();
    let lib = lib();
    let driver = Driver::open(&lib)
        .expect("cuFileDriverOpen (CUFILE_FORCE_COMPAT_MODE=true without nvidia-fs)");
    let props = driver.properties().expect("cuFileDriverGetProperties");
    println!("cuFile {:?}: {props:?}", lib.path());
    let mut rng = Rng::new(40);
    let data = rng.bytes((1 << 20) + 123);
    let len = data.len() as u64;
    let (_dir, path) = test_file(&data);
    let fh =
        FileHandle::register(&driver, File::open(&path).unwrap()).expect("cuFileHandleRegister");
    let buf = RegisteredBuffer::register(
        &driver,
        &g.backend,
        upload(&g.backend, &vec![POISON; len as usize + 8192]).unwrap(),
    )
    .expect("cuFileBufRegister");
    let stream = g.backend.create_stream("cufile-test").unwrap();
    let rs = RegisteredStream::adopt(&driver, &g.backend, &stream).expect("cuFileStreamRegister");

    let barrier = Barrier::park(&g.backend, &stream);
    let read = barrier.guard("submitting and querying the read", || {
        let read = rs.read_async(&fh, &buf, 4096, 0, len).expect("cuFileReadAsync");
        // The stream is parked before the read: it cannot have retired.
        assert!(!read.is_done().unwrap());
        assert_eq!(read.outcome().unwrap(), None);
        assert!(!read.is_done().unwrap());
        // Nor can its bytes be in the buffer (a non-blocking stream does not order with
        // this synchronous copy).
        let early = download(&g.backend, slice(&buf, 4096, len)).unwrap();
        assert!(early.iter().all(|&b| b == POISON), "bytes landed before the barrier lifted");
        read
    });
    barrier.lift();
    assert_eq!(read.wait().unwrap(), len);
    assert!(read.is_done().unwrap());
    assert_eq!(read.outcome().unwrap(), Some(len));
    assert!(download(&g.backend, slice(&buf, 4096, len)).unwrap() == data, "the file's bytes");
    assert!(download(&g.backend, slice(&buf, 0, 4096)).unwrap().iter().all(|&b| b == POISON));
    drop(read);

    // An unaligned read at an unaligned file offset, and a read past the file's end.
    let part = rs.read_async(&fh, &buf, 3, 777, 10_000).unwrap();
    assert_eq!(part.wait().unwrap(), 10_000);
    assert!(download(&g.backend, slice(&buf, 3, 10_000)).unwrap() == data[777..10_777]);
    drop(part);
    // A read past the file's end is an error: short (10 of 100 bytes), or cuFile's own.
    let short = rs.read_async(&fh, &buf, 0, len - 10, 100).unwrap();
    let e = short.wait();
    assert!(
        matches!(
            e,
            Err(crate::Error::CufileShortRead { requested: 100, read: 10, .. }
                | crate::Error::CufileIo { .. })
        ),
        "{e:?}"
    );
    drop(short);
    // A read past the buffer's end is refused before cuFile sees it.
    assert!(matches!(
        rs.read_async(&fh, &buf, 8192, 0, len + 1),
        Err(crate::Error::BufferTooSmall { .. })
    ));
    drop((rs, stream, buf, fh, driver));
    let c = lib.counts();
    assert!(c.balanced(), "{c:?}");
    assert_eq!(c.streams, (1, 1));
}

#[test]
fn cufile_hundred_pipelines_on_fresh_streams_read_and_tear_down_gpu() {
    let _serial = serial();
    let g = gpu();
    let lib = lib();
    let mut rng = Rng::new(41);
    let data = rng.bytes(3 << 20);
    let (_dir, path) = test_file(&data);
    let mut failures = Vec::new();
    for i in 0..100u64 {
        let run = || -> crate::Result<bool> {
            let driver = Driver::open(&lib)?;
            let fh = FileHandle::register(&driver, File::open(&path).expect("open"))?;
            let stream = g.backend.create_stream("cufile-pipeline")?;
            let rs = RegisteredStream::adopt(&driver, &g.backend, &stream)?;
            let mem = upload(&g.backend, &vec![POISON; 1 << 20])?;
            let buf = RegisteredBuffer::register(&driver, &g.backend, mem)?;
            let (offset, len) = (i * 20_011, (1 << 20) - i * 1000);
            let read = rs.read_async(&fh, &buf, 0, offset, len)?;
            let n = read.wait()?;
            let got = download(&g.backend, slice(&buf, 0, len))?;
            let same = n == len && got[..] == data[offset as usize..(offset + len) as usize];
            // Teardown in order: the read, the stream's registration, the stream, the
            // buffer, the file, the driver.
            drop(read);
            drop(rs);
            drop(stream);
            drop(buf);
            drop(fh);
            drop(driver);
            Ok(same)
        };
        match run() {
            Ok(true) => {}
            Ok(false) => failures.push(format!("pipeline {i}: the bytes read differ")),
            Err(e) => failures.push(format!("pipeline {i}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{} of 100 pipelines failed: {failures:?}", failures.len());
    let c = lib.counts();
    assert_eq!(
        (c.drivers, c.handles, c.buffers, c.streams),
        ((100, 100), (100, 100), (100, 100), (100, 100)),
        "every pipeline registered and deregistered each once"
    );
}

#[test]
fn cufile_teardown_with_a_read_in_flight_releases_every_registration_gpu() {
    let _serial = serial();
    let g = gpu();
    let lib = lib();
    let mut rng = Rng::new(42);
    let data = rng.bytes(8 << 20);
    let (_dir, path) = test_file(&data);
    for i in 0..20 {
        let driver = Driver::open(&lib).unwrap();
        let fh = FileHandle::register(&driver, File::open(&path).unwrap()).unwrap();
        let stream = g.backend.create_stream("cufile-teardown").unwrap();
        let rs = RegisteredStream::adopt(&driver, &g.backend, &stream).unwrap();
        let buf = RegisteredBuffer::register(
            &driver,
            &g.backend,
            g.backend.alloc_device(8 << 20).unwrap(),
        )
        .unwrap();
        let barrier = Barrier::park(&g.backend, &stream);
        let read = barrier.guard("submitting the read", || {
            let read = rs.read_async(&fh, &buf, 0, 0, 8 << 20).unwrap();
            assert!(!read.is_done().unwrap(), "iteration {i}");
            read
        });
        // Teardown starts while the read is parked (it cannot retire before the barrier
        // lifts): dropping its completion blocks until it retired.
        let started = (Mutex::new(false), Condvar::new());
        std::thread::scope(|s| {
            let t = s.spawn(|| {
                *started.0.lock().unwrap_or_else(PoisonError::into_inner) = true;
                started.1.notify_all();
                drop(read);
            });
            let go = started.0.lock().unwrap_or_else(PoisonError::into_inner);
            drop(started.1.wait_while(go, |s| !*s).unwrap_or_else(PoisonError::into_inner));
            barrier.lift();
            t.join().expect("teardown of the read");
        });
        drop((rs, stream, buf, fh, driver));
        let c = lib.counts();
        assert!(c.balanced(), "iteration {i}: {c:?}");
        let n = i + 1;
        assert_eq!((c.drivers, c.handles, c.buffers, c.streams), ((n, n), (n, n), (n, n), (n, n)));
    }
}
