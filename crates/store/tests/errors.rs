//! Error mapping: absent files, directories, paths through files, permissions, truncated
//! files, reads past end of file, bad keys and bad buffers. Each error names its path.

use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;

use store::{Error, IoOp, ReadRequest, Store};

use crate::{byte, small_store, write_file};

#[test]
fn missing_file_is_none_for_stat_and_not_found_for_reads() {
    let d = tempfile::tempdir().unwrap();
    let s = small_store(d.path());
    let path = d.path().join("nope/x.bin");
    assert_eq!(s.stat("nope/x.bin"), Ok(None));
    let mut buf = [0u8; 8];
    assert_eq!(s.read("nope/x.bin", 0, &mut buf), Err(Error::NotFound { path: path.clone() }));
    assert_eq!(s.read_all("nope/x.bin"), Err(Error::NotFound { path: path.clone() }));
    let r = s.submit(vec![ReadRequest::to_vec("nope/x.bin", 0, 8)]).unwrap().wait();
    let e = r[0].outcome.clone().unwrap_err();
    assert!(e.is_not_found());
    assert_eq!(e.path(), Some(path.as_path()));
}

#[test]
fn a_directory_is_a_typed_error() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("sub")).unwrap();
    let s = small_store(d.path());
    let path = d.path().join("sub");
    assert_eq!(s.stat("sub"), Err(Error::IsDirectory { path: path.clone() }));
    let mut buf = [0u8; 8];
    assert_eq!(s.read("sub", 0, &mut buf), Err(Error::IsDirectory { path: path.clone() }));
    assert_eq!(s.read_all("sub"), Err(Error::IsDirectory { path }));
}

#[test]
fn a_path_through_a_file_is_not_a_directory_with_errno() {
    let d = tempfile::tempdir().unwrap();
    write_file(d.path(), "f", 0, 10);
    let s = small_store(d.path());
    let path = d.path().join("f/child");
    let want = |op| Error::Io {
        op,
        path: path.clone(),
        kind: ErrorKind::NotADirectory,
        raw_os_error: Some(20),
    };
    assert_eq!(s.stat("f/child"), Err(want(IoOp::Stat)));
    let mut buf = [0u8; 4];
    assert_eq!(s.read("f/child", 0, &mut buf), Err(want(IoOp::Open)));
    let msg = want(IoOp::Open).to_string();
    assert!(msg.contains("f/child") && msg.contains("os error 20"), "{msg}");
}

#[test]
fn unreadable_file_is_permission_denied_when_the_os_refuses() {
    let d = tempfile::tempdir().unwrap();
    let path = write_file(d.path(), "secret", 1, 16);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    let s = small_store(d.path());
    let mut buf = [0u8; 16];
    // Root (CAP_DAC_OVERRIDE) may open it anyway: ask the OS first, then require the
    // store to agree with it. The mocked-opener unit test covers EACCES unconditionally.
    match std::fs::File::open(&path) {
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::PermissionDenied);
            assert_eq!(
                s.read("secret", 0, &mut buf),
                Err(Error::Io {
                    op: IoOp::Open,
                    path: path.clone(),
                    kind: ErrorKind::PermissionDenied,
                    raw_os_error: Some(13)
                })
            );
        }
        Ok(_) => {
            assert_eq!(s.read("secret", 0, &mut buf), Ok(16));
            assert_eq!(buf[5], byte(1, 5));
        }
    }
}

#[test]
fn truncated_file_is_a_short_read_with_the_path() {
    let d = tempfile::tempdir().unwrap();
    let path = write_file(d.path(), "shard", 2, 60);
    let s = small_store(d.path());
    let mut buf = [0u8; 100];
    assert_eq!(
        s.read_exact("shard", 0, &mut buf),
        Err(Error::ShortRead { path: path.clone(), offset: 0, expected: 100, got: 60 })
    );
    let r = s.submit(vec![ReadRequest::to_vec("shard", 10, 100)]).unwrap().wait();
    assert_eq!(r[0].bytes(), Ok(50));
    assert_eq!(
        r[0].exact(&path),
        Err(Error::ShortRead { path, offset: 10, expected: 100, got: 50 })
    );
}

#[test]
fn reads_past_end_of_file_are_short_not_errors() {
    let d = tempfile::tempdir().unwrap();
    write_file(d.path(), "f", 3, 100);
    let s = small_store(d.path());
    let mut buf = [0xAAu8; 20];
    assert_eq!(s.read("f", 90, &mut buf), Ok(10));
    assert!((0..10).all(|i| buf[i] == byte(3, 90 + i as u64)));
    assert!(buf[10..].iter().all(|&b| b == 0xAA), "bytes past EOF must stay untouched");
    assert_eq!(s.read("f", 100, &mut buf), Ok(0));
    assert_eq!(s.read("f", u64::MAX - 5, &mut buf[..4]), Ok(0));
    assert_eq!(s.read("f", 0, &mut []), Ok(0));
}

#[test]
fn bad_keys_and_bad_ranges_are_typed_per_read() {
    let d = tempfile::tempdir().unwrap();
    let abs = write_file(d.path(), "f", 4, 100);
    let s = small_store(d.path());
    let mut buf = [0u8; 4];
    assert_eq!(s.read("../f", 0, &mut buf), Err(Error::KeyEscapesRoot { key: "../f".into() }));
    assert_eq!(s.stat(""), Err(Error::EmptyKey));
    // An absolute key is used as is.
    assert_eq!(s.stat(abs.to_str().unwrap()), Ok(Some(100)));
    let reads = vec![
        ReadRequest::to_vec("a/../../f", 0, 4),
        ReadRequest::into_buf("f", 0, 10, Box::new(vec![0u8; 8]), 0),
        ReadRequest::into_buf("f", 0, 4, Box::new(vec![0u8; 8]), usize::MAX),
        ReadRequest::to_vec("f", u64::MAX, 4),
        ReadRequest::to_vec("f", 96, 4),
    ];
    let r = s.submit(reads).unwrap().wait();
    assert_eq!(r[0].outcome, Err(Error::KeyEscapesRoot { key: "a/../../f".into() }));
    assert_eq!(
        r[1].outcome,
        Err(Error::BufferTooSmall { key: "f".into(), buf_offset: 0, len: 10, buf_len: 8 })
    );
    assert!(matches!(r[2].outcome, Err(Error::BufferTooSmall { buf_offset: usize::MAX, .. })));
    assert_eq!(
        r[3].outcome,
        Err(Error::RangeOverflow { path: d.path().join("f"), offset: u64::MAX, len: 4 })
    );
    assert_eq!(r[4].bytes(), Ok(4));
    // The refused buffers come back intact.
    assert_eq!(
        *store::downcast_buf::<Vec<u8>>(r.into_iter().nth(1).unwrap().buf).unwrap(),
        vec![0u8; 8]
    );
}
