//! The cuFile binding on a machine without CUDA: the library search and its typed
//! absence, the names of cuFile's codes, the driver properties, and the completion's
//! logic over a signal the test controls.

use std::path::PathBuf;

use crate::cufile::completion::{ReadCompletion, ReadParams, Retirement};
use crate::cufile::{
    CufileLib, DriverProperties, FileSystem, RegistrationCounts, io_error_name, op_error_name, raw,
};
use crate::error::{Error, Result};
use crate::search::{CUFILE, CUFILE_ENV, Candidate, SearchInputs, candidates_for};
use crate::sync::{Arc, Condvar, Mutex, PoisonError};

#[test]
fn cufile_search_order_is_env_then_loader_then_wheels() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let root = PathBuf::from("/site");
    let c = candidates_for(
        &CUFILE,
        &SearchInputs { env: Some(dir.clone().into_os_string()), wheel_roots: vec![root.clone()] },
    );
    let files = |d: PathBuf| {
        ["libcufile.so.0", "libcufile.so"].into_iter().map(move |n| Candidate::File(d.join(n)))
    };
    let wheel = ["nvidia/cu13/lib", "nvidia/cufile/lib", "nvidia/cufile/lib64"];
    let mut want: Vec<Candidate> = files(dir.clone()).collect();
    want.extend(wheel.iter().flat_map(|w| files(dir.join(w))));
    want.extend(files(dir.join("lib64")));
    want.extend(files(dir.join("lib")));
    want.push(Candidate::Soname("libcufile.so.0"));
    want.push(Candidate::Soname("libcufile.so"));
    want.extend(wheel.iter().flat_map(|w| files(root.join(w))));
    assert_eq!(c, want);
    // The nvCOMP search is unchanged by the generalization.
    assert_eq!(
        crate::search::candidates(&SearchInputs { env: None, wheel_roots: vec![] }),
        crate::search::NVCOMP_SONAMES.iter().map(|n| Candidate::Soname(n)).collect::<Vec<_>>()
    );
    let inputs = SearchInputs::from_env_for(&CUFILE);
    assert_eq!(inputs.env, std::env::var_os(CUFILE_ENV));
}

#[test]
fn a_missing_cufile_is_a_typed_error_naming_the_library() {
    let tmp = tempfile::tempdir().unwrap();
    // A file of the right name that is no library must not load (nor panic) either.
    std::fs::write(tmp.path().join("libcufile.so.0"), b"not an ELF file").unwrap();
    let inputs =
        SearchInputs { env: Some(tmp.path().into()), wheel_roots: vec![tmp.path().into()] };
    match CufileLib::open(&inputs) {
        Err(e @ Error::CufileMissing { .. }) => {
            let Error::CufileMissing { searched } = &e else { unreachable!() };
            let want: Vec<PathBuf> =
                candidates_for(&CUFILE, &inputs).iter().map(Candidate::as_path).collect();
            assert_eq!(searched, &want);
            assert!(searched.contains(&tmp.path().join("libcufile.so.0")));
            let msg = e.to_string();
            assert!(msg.contains("libcufile.so") && msg.contains(CUFILE_ENV), "{msg}");
        }
        // Only a system-wide cuFile (found by the loader) may satisfy this search.
        Ok(lib) => assert!(
            ["libcufile.so.0", "libcufile.so"]
                .iter()
                .any(|n| lib.path() == std::path::Path::new(n)),
            "{lib:?}"
        ),
        Err(e) => panic!("unexpected {e}"),
    }
}

#[test]
fn cufile_codes_have_their_header_names() {
    assert_eq!(op_error_name(0), "CU_FILE_SUCCESS");
    assert_eq!(op_error_name(5011), "CU_FILE_CUDA_DRIVER_ERROR");
    assert_eq!(op_error_name(5038), "CU_FILE_ASYNC_NOT_SUPPORTED");
    assert_eq!(op_error_name(5021), "unknown cuFile error");
    assert!(op_error_name(5001).starts_with("CU_FILE_DRIVER_NOT_INITIALIZED"));
    assert_eq!(io_error_name(5044), "CU_FILE_IO_ERROR");
    assert!(io_error_name(5).starts_with("errno 5: "), "{}", io_error_name(5));
    assert_eq!(io_error_name(0), "no byte count written by the read");
    let e = Error::Cufile { call: raw::BUF_REGISTER, err: 5011, cu_err: 2 };
    assert_eq!(
        e.to_string(),
        "cuFile cuFileBufRegister failed: CU_FILE_CUDA_DRIVER_ERROR (5011), CUDA driver error 2"
    );
    let e = Error::Cufile { call: raw::DRIVER_OPEN, err: 5026, cu_err: 0 };
    assert_eq!(e.to_string(), "cuFile cuFileDriverOpen failed: CU_FILE_DRIVER_ALREADY_OPEN (5026)");
}

#[test]
fn driver_properties_decode_the_flag_words() {
    let mut p = raw::DrvProps::default();
    p.nvfs.major_version = 2;
    p.nvfs.minor_version = 17;
    p.nvfs.dstatusflags = (1 << 4) | (1 << 0);
    p.nvfs.dcontrolflags = 1 << 1;
    p.fflags = 1 << 2;
    let d = DriverProperties::from_raw(&p);
    assert_eq!(d.nvfs_version, (2, 17));
    assert!(d.supports(FileSystem::Nvme) && d.supports(FileSystem::Lustre));
    assert!(!d.supports(FileSystem::Nfs) && !d.supports(FileSystem::Gpfs));
    assert!(d.compat_mode_allowed() && d.streams_supported() && !d.batch_io_supported());
    assert!(!DriverProperties::default().compat_mode_allowed());
    // The C struct's layout (x86-64 and aarch64 Linux): 8 + 8 + 8 + 8 + 6 * 4 bytes.
    assert_eq!(std::mem::size_of::<raw::DrvPropsNvfs>(), 32);
    assert_eq!(std::mem::size_of::<raw::DrvProps>(), 56);
    assert_eq!(std::mem::size_of::<raw::Status>(), 8);
    assert_eq!(std::mem::size_of::<raw::Descr>(), 24);
    let c = RegistrationCounts { drivers: (1, 1), handles: (3, 3), ..Default::default() };
    assert!(c.balanced());
    assert!(!RegistrationCounts { streams: (2, 1), ..c }.balanced());
}

/// A signal the test fires: what an event recorded after the read is on a GPU.
#[derive(Debug, Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    open: bool,
    fail: bool,
    waiters: u32,
    waits: u32,
}

impl Gate {
    fn with<T>(&self, f: impl FnOnce(&mut GateState) -> T) -> T {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let out = f(&mut s);
        self.changed.notify_all();
        out
    }

    /// Blocks until at least `n` threads wait on the gate.
    fn until_waiters(&self, n: u32) {
        let s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        drop(self.changed.wait_while(s, |s| s.waiters < n).unwrap_or_else(PoisonError::into_inner));
    }
}

#[derive(Debug, Clone)]
struct Signal(Arc<Gate>);

impl Retirement for Signal {
    fn query(&self) -> Result<bool> {
        Ok(self.0.with(|s| s.open))
    }

    fn wait(&self) -> Result<()> {
        let g = &self.0;
        let mut s = g.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.waits += 1;
        if s.fail {
            return Err(Error::CudaFeatureDisabled);
        }
        s.waiters += 1;
        g.changed.notify_all();
        let mut s = g.changed.wait_while(s, |s| !s.open).unwrap_or_else(PoisonError::into_inner);
        s.waiters -= 1;
        Ok(())
    }
}

/// A completion of a read of `len` bytes whose signal the test holds; `retire` writes
/// what cuFile would (`bytes_read`), then opens the gate.
fn completion(len: u64) -> (ReadCompletion<'static, Signal>, Arc<Gate>) {
    let gate = Arc::new(Gate::default());
    let params = ReadCompletion::<Signal>::params(len, 4096, 0).unwrap();
    // SAFETY: no read uses the block; the test stands in for cuFile.
    (unsafe { ReadCompletion::new(Signal(Arc::clone(&gate)), params) }, gate)
}

fn retire(c: &ReadCompletion<'_, Signal>, gate: &Gate, bytes_read: isize) {
    // SAFETY: the block is alive and nothing else writes it (the test is cuFile here).
    unsafe { (*c.params_ptr()).bytes_read = bytes_read };
    gate.with(|s| s.open = true);
}

#[test]
fn a_read_is_done_only_once_its_signal_passed() {
    let (c, gate) = completion(1000);
    // Submitted, not retired: never "done", whatever the block holds.
    assert_eq!(c.is_done(), Ok(false));
    assert_eq!(c.outcome(), Ok(None));
    // SAFETY: as in `retire`.
    unsafe { (*c.params_ptr()).bytes_read = 1000 };
    assert_eq!(c.is_done(), Ok(false), "a written count is not completion; the signal is");
    assert_eq!(c.outcome(), Ok(None));
    retire(&c, &gate, 1000);
    assert_eq!(c.is_done(), Ok(true));
    assert_eq!(c.outcome(), Ok(Some(1000)));
    assert_eq!(c.wait(), Ok(1000));
}

#[test]
fn a_read_reports_cufile_failures_and_short_reads() {
    for (written, want) in [
        (-5, Err(Error::CufileIo { call: "cuFileReadAsync", code: 5 })),
        (-5044, Err(Error::CufileIo { call: "cuFileReadAsync", code: 5044 })),
        (999, Err(Error::CufileShortRead { file_offset: 4096, requested: 1000, read: 999 })),
        (ReadParams::UNWRITTEN, Err(Error::CufileIo { call: "cuFileReadAsync", code: 0 })),
        (1000, Ok(1000)),
    ] {
        let (c, gate) = completion(1000);
        retire(&c, &gate, written);
        assert_eq!(c.wait(), want, "bytes_read {written}");
        assert_eq!(c.outcome(), want.map(Some), "bytes_read {written}");
    }
    let of = ReadCompletion::<Signal>::params(1, 1 << 63, 0);
    assert!(matches!(of, Err(Error::Overflow { what: "cuFile file offset", .. })), "{of:?}");
    let of = ReadCompletion::<Signal>::params(1, 0, u64::MAX);
    assert!(matches!(of, Err(Error::Overflow { what: "cuFile buffer offset", .. })), "{of:?}");
}

#[test]
fn dropping_a_pending_read_waits_until_it_retired() {
    let (c, gate) = completion(64);
    let dropped = Mutex::new(false);
    std::thread::scope(|s| {
        let t = s.spawn(|| {
            drop(c);
            *dropped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        });
        // The dropper waits on the signal, and the read cannot retire before the gate
        // opens: the completion is still alive (and its block with it).
        gate.until_waiters(1);
        assert!(!*dropped.lock().unwrap_or_else(PoisonError::into_inner));
        gate.with(|s| s.open = true);
        t.join().unwrap();
    });
    assert!(*dropped.lock().unwrap_or_else(PoisonError::into_inner));
    assert_eq!(gate.with(|s| s.waits), 1);
    // A signal whose wait fails: the drop returns (the block is leaked, not freed).
    let (c, gate) = completion(64);
    gate.with(|s| s.fail = true);
    drop(c);
    assert_eq!(gate.with(|s| s.waits), 1);
}
