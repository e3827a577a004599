//! `RemoteStore` against real servers on 127.0.0.1 (the `loopback` crate): an S3
//! implementation (`s3s-fs`, signed requests) and an HTTP file server with injected
//! faults. Every value read is compared with the file it came from.

use std::path::Path;
use std::time::{Duration, Instant};

use loopback::{BUCKET, Fault, HttpServer, S3Server};
use store::{Error, ReadRequest, RemoteConfig, RemoteFailure, RemoteStore, Span, SpanRead, Store};

use crate::{byte, write_file};

/// Fast retries, so that a test exhausting the retry budget takes milliseconds.
fn config() -> RemoteConfig {
    RemoteConfig {
        max_retries: 2,
        init_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        request_timeout: Duration::from_secs(10),
        ..Default::default()
    }
}

fn s3_store(server: &S3Server, cfg: RemoteConfig) -> RemoteStore {
    let mut cfg = cfg;
    let opts = cfg.options.entry("s3".into()).or_default();
    for (k, v) in server.client_options() {
        opts.insert(k.into(), v);
    }
    RemoteStore::new(&format!("s3://{BUCKET}"), &cfg).unwrap()
}

fn http_store(server: &HttpServer, cfg: RemoteConfig) -> RemoteStore {
    RemoteStore::new(&server.endpoint(), &cfg).unwrap()
}

fn expected(file: u64, offset: u64, len: usize) -> Vec<u8> {
    (offset..offset + len as u64).map(|i| byte(file, i)).collect()
}

/// The same checks through any remote store serving `dir` (written by `fixture_dir`).
///
/// `long_suffix`: whether to ask for a suffix longer than the object (or of an empty
/// object), which S3 answers with the whole object (or a 416) but `s3s-fs` 0.14 refuses
/// with a 500 (or a panic in the server task): server bugs. Shard indexes are never
/// longer than a valid shard, so the loader does not rely on either.
fn check_reads(s: &RemoteStore, base: &str, long_suffix: bool) {
    let key = |k: &str| format!("{base}/{k}");
    assert_eq!(s.stat(&key("a.bin")).unwrap(), Some(10_000));
    assert_eq!(s.stat(&key("sub/b.bin")).unwrap(), Some(300));
    assert_eq!(s.stat(&key("empty.bin")).unwrap(), Some(0));
    assert_eq!(s.stat(&key("missing.bin")).unwrap(), None, "absent is not an error");
    assert_eq!(s.stat("sub/b.bin").unwrap(), Some(300), "relative keys work too");

    let mut buf = vec![0xAA; 1000];
    assert_eq!(s.read(&key("a.bin"), 1234, &mut buf).unwrap(), 1000);
    assert_eq!(buf, expected(1, 1234, 1000));
    // Past the end: short, never padded, and 0 at or after the end.
    let mut buf = vec![0xAA; 100];
    assert_eq!(s.read(&key("a.bin"), 9_950, &mut buf).unwrap(), 50);
    assert_eq!(buf[..50], expected(1, 9_950, 50)[..]);
    assert!(buf[50..].iter().all(|&b| b == 0xAA), "bytes past the end are untouched");
    assert_eq!(s.read(&key("a.bin"), 10_000, &mut buf).unwrap(), 0);
    assert_eq!(s.read(&key("empty.bin"), 0, &mut buf).unwrap(), 0);
    let e = s.read_exact(&key("a.bin"), 9_990, &mut buf).unwrap_err();
    assert!(matches!(e, Error::ShortRead { expected: 100, got: 10, .. }), "{e}");

    assert_eq!(s.read_all(&key("sub/b.bin")).unwrap(), expected(2, 0, 300));
    assert_eq!(s.read_all(&key("empty.bin")).unwrap(), Vec::<u8>::new());

    let tail = s.read_span(&key("a.bin"), Span::Tail(16)).unwrap();
    assert_eq!(tail, Some(SpanRead { object_len: 10_000, bytes: expected(1, 9_984, 16) }));
    let head = s.read_span(&key("a.bin"), Span::Head(16)).unwrap();
    assert_eq!(head, Some(SpanRead { object_len: 10_000, bytes: expected(1, 0, 16) }));
    let n = if long_suffix { 1_000 } else { 300 };
    let whole = s.read_span(&key("sub/b.bin"), Span::Tail(n)).unwrap();
    assert_eq!(whole, Some(SpanRead { object_len: 300, bytes: expected(2, 0, 300) }));
    if long_suffix {
        let empty = s.read_span(&key("empty.bin"), Span::Tail(16)).unwrap();
        assert_eq!(empty, Some(SpanRead { object_len: 0, bytes: Vec::new() }));
    }
    let empty = s.read_span(&key("empty.bin"), Span::Head(16)).unwrap();
    assert_eq!(empty, Some(SpanRead { object_len: 0, bytes: Vec::new() }));
    assert_eq!(s.read_span(&key("missing.bin"), Span::Tail(16)).unwrap(), None);

    // A batch into one shared buffer at different offsets, plus a failure of its own.
    let shared: Box<dyn store::IoBuf> = Box::new(vec![0xAAu8; 600]);
    let mut reads = vec![ReadRequest::into_buf(key("a.bin"), 100, 200, shared, 0)];
    reads.push(ReadRequest::to_vec(key("sub/b.bin"), 250, 100));
    reads.push(ReadRequest::to_vec(key("missing.bin"), 0, 10));
    reads.push(ReadRequest::to_vec(key("a.bin"), 0, 0));
    let rs = s.submit(reads).unwrap().wait();
    assert_eq!(rs[0].bytes(), Ok(200));
    let b0 = store::downcast_buf::<Vec<u8>>(rs.into_iter().next().unwrap().buf).unwrap();
    assert_eq!(b0[..200], expected(1, 100, 200)[..]);
    assert!(b0[200..].iter().all(|&b| b == 0xAA));
    let rs = s
        .submit(vec![
            ReadRequest::to_vec(key("sub/b.bin"), 250, 100),
            ReadRequest::to_vec(key("missing.bin"), 0, 10),
            ReadRequest::to_vec(key("a.bin"), 0, 0),
        ])
        .unwrap()
        .wait();
    assert_eq!(rs[0].bytes(), Ok(50));
    assert!(
        matches!(rs[1].bytes(), Err(Error::NotFound { path }) if path == Path::new(&key("missing.bin"))),
        "{:?}",
        rs[1]
    );
    assert_eq!(rs[2].bytes(), Ok(0));
}

fn fixture_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "a.bin", 1, 10_000);
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    write_file(dir.path(), "sub/b.bin", 2, 300);
    std::fs::write(dir.path().join("empty.bin"), b"").unwrap();
    dir
}

#[test]
fn s3_reads_equal_the_files() {
    let dir = fixture_dir();
    let server = S3Server::serve(dir.path()).unwrap();
    let s = s3_store(&server, config());
    check_reads(&s, &format!("s3://{BUCKET}"), false);
    assert!(server.requests() > 0);
    let st = s.stats();
    assert!(st.bytes_read > 0 && st.errors > 0, "{st:?}");
}

#[test]
fn http_reads_equal_the_files() {
    let dir = fixture_dir();
    let server = HttpServer::serve(dir.path()).unwrap();
    let s = http_store(&server, config());
    check_reads(&s, &server.endpoint(), true);
}

#[test]
fn large_reads_split_into_concurrent_parts_of_at_least_min_part() {
    let dir = fixture_dir();
    let server = HttpServer::serve(dir.path()).unwrap();
    let cfg = RemoteConfig { min_part: 1_000, max_part: 2_000, ..config() };
    let s = http_store(&server, cfg);
    let before = server.requests_for("a.bin");
    let mut buf = vec![0; 9_000];
    assert_eq!(s.read("a.bin", 500, &mut buf).unwrap(), 9_000);
    assert_eq!(buf, expected(1, 500, 9_000));
    assert_eq!(server.requests_for("a.bin") - before, 5, "9000 bytes in parts of 1800");
    // Parts past the end contribute nothing; the prefix before them is exact.
    let mut buf = vec![0; 9_000];
    assert_eq!(s.read("a.bin", 4_000, &mut buf).unwrap(), 6_000);
    assert_eq!(buf[..6_000], expected(1, 4_000, 6_000)[..]);
    // Below 2 * min_part: one request.
    let before = server.requests_for("a.bin");
    let mut buf = vec![0; 1_999];
    assert_eq!(s.read("a.bin", 0, &mut buf).unwrap(), 1_999);
    assert_eq!(server.requests_for("a.bin") - before, 1);
}

#[test]
fn requests_in_flight_stay_within_the_bound() {
    let dir = fixture_dir();
    let server = S3Server::serve(dir.path()).unwrap();
    server.set_latency(Duration::from_millis(20));
    let s = s3_store(&server, RemoteConfig { max_in_flight: 3, ..config() });
    let reads = (0..12).map(|i| ReadRequest::to_vec("a.bin", i * 100, 100)).collect();
    let rs = s.submit(reads).unwrap().wait();
    for (i, r) in rs.into_iter().enumerate() {
        assert_eq!(r.bytes(), Ok(100));
        let b = store::downcast_buf::<Vec<u8>>(r.buf).unwrap();
        assert_eq!(*b, expected(1, i as u64 * 100, 100));
    }
    let peak = server.peak_in_flight();
    assert!((1..=3).contains(&peak), "peak {peak} requests in flight with a bound of 3");
}

#[test]
fn a_missing_object_is_not_found_naming_the_url() {
    let dir = fixture_dir();
    let server = S3Server::serve(dir.path()).unwrap();
    let s = s3_store(&server, config());
    let url = format!("s3://{BUCKET}/nope/zarr.json");
    let e = s.read_all(&url).unwrap_err();
    assert_eq!(e, Error::NotFound { path: url.clone().into() });
    assert!(e.to_string().contains(&url), "{e}");
}

#[test]
fn anonymous_requests_to_a_signed_bucket_are_denied_with_a_typed_error() {
    let dir = fixture_dir();
    let server = S3Server::serve(dir.path()).unwrap();
    let mut cfg = config();
    let opts = cfg.options.entry("s3".into()).or_default();
    opts.insert("aws_endpoint".into(), server.endpoint());
    opts.insert("aws_region".into(), loopback::REGION.into());
    opts.insert("aws_allow_http".into(), "true".into());
    opts.insert("aws_skip_signature".into(), "true".into());
    let s = RemoteStore::new(&format!("s3://{BUCKET}"), &cfg).unwrap();
    let e = s.read_all("a.bin").unwrap_err();
    assert!(
        matches!(&e, Error::Remote { failure: RemoteFailure::Denied, status: Some(403), .. }),
        "{e:?}"
    );
}

#[test]
fn s3_503s_are_retried_then_reported_with_url_range_and_status() {
    let dir = fixture_dir();
    let server = S3Server::serve(dir.path()).unwrap();
    let s = s3_store(&server, config());
    server.inject(Fault::Status(503), 2, "a.bin");
    let mut buf = vec![0; 100];
    assert_eq!(s.read("a.bin", 10, &mut buf).unwrap(), 100, "two 503s fit the budget of 2 retries");
    assert_eq!(buf, expected(1, 10, 100));
    assert_eq!(server.faults_left(), 0);

    server.inject(Fault::Status(503), 3, "a.bin");
    let before = server.requests_for("a.bin");
    let e = s.read("a.bin", 10, &mut buf).unwrap_err();
    assert_eq!(server.requests_for("a.bin") - before, 3, "one try and two retries");
    match &e {
        Error::Remote { url, range, status, failure, .. } => {
            assert_eq!(url, &format!("s3://{BUCKET}/a.bin"));
            assert_eq!(*range, Some((10, 110)));
            assert_eq!(*status, Some(503));
            assert_eq!(*failure, RemoteFailure::Status);
        }
        other => panic!("expected Remote, got {other:?}"),
    }
    let text = e.to_string();
    assert!(text.contains("a.bin") && text.contains("10..110") && text.contains("503"), "{text}");
    // Later reads are served.
    assert_eq!(s.read("a.bin", 20, &mut buf).unwrap(), 100);
    assert_eq!(buf, expected(1, 20, 100));
}

#[test]
fn http_faults_are_retried_or_typed_and_never_short() {
    let dir = fixture_dir();
    let server = HttpServer::serve(dir.path()).unwrap();
    let s = http_store(&server, config());
    let mut buf = vec![0; 1000];

    // Each fault once: retried, and the value is right.
    for fault in [Fault::Status(503), Fault::Status(500), Fault::Reset, Fault::Truncate] {
        server.inject(fault, 1, "a.bin");
        buf.fill(0);
        let n = s.read("a.bin", 3000, &mut buf).unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        assert_eq!(n, 1000, "{fault:?}");
        assert_eq!(buf, expected(1, 3000, 1000), "{fault:?}");
        assert_eq!(server.faults_left(), 0, "{fault:?} was used");
    }

    // Each fault past the budget: a typed error, never short data.
    server.inject(Fault::Reset, 10, "a.bin");
    let e = s.read("a.bin", 0, &mut buf).unwrap_err();
    assert!(matches!(&e, Error::Remote { status: None, range: Some((0, 1000)), .. }), "{e:?}");
    server.inject(Fault::Truncate, 10, "a.bin");
    let e = s.read("a.bin", 0, &mut buf).unwrap_err();
    assert!(matches!(&e, Error::Remote { range: Some((0, 1000)), .. }), "{e:?}");
    server.inject(Fault::ShortLength, 1, "a.bin");
    let e = s.read("a.bin", 0, &mut buf).unwrap_err();
    assert!(
        matches!(
            &e,
            Error::BodyLength { start: 0, end: 1000, got: 500, .. } | Error::Remote { .. }
        ),
        "{e:?}"
    );
    // Later reads (of an object without armed faults) are served.
    let mut buf = vec![0; 300];
    assert_eq!(s.read("sub/b.bin", 0, &mut buf).unwrap(), 300);
    assert_eq!(buf, expected(2, 0, 300));
}

#[test]
fn a_short_content_length_is_an_error_not_short_data() {
    let dir = fixture_dir();
    let server = HttpServer::serve(dir.path()).unwrap();
    let s = http_store(&server, config());
    server.inject(Fault::ShortLength, 1, "a.bin");
    let mut buf = vec![0; 1000];
    let e = s.read("a.bin", 2000, &mut buf).unwrap_err();
    assert!(
        matches!(
            &e,
            Error::BodyLength { start: 2000, end: 3000, got: 500, .. }
                | Error::Remote { failure: RemoteFailure::Response, .. }
        ),
        "{e:?}"
    );
    assert_eq!(s.read("a.bin", 2000, &mut buf).unwrap(), 1000, "the next read is served");
    assert_eq!(buf, expected(1, 2000, 1000));
}

#[test]
fn a_stalled_response_times_out_instead_of_hanging() {
    let dir = fixture_dir();
    let server = HttpServer::serve(dir.path()).unwrap();
    let cfg =
        RemoteConfig { request_timeout: Duration::from_millis(300), max_retries: 1, ..config() };
    let s = http_store(&server, cfg);
    server.inject(Fault::Stall, 2, "a.bin");
    let t0 = Instant::now();
    let ticket = s.submit(vec![ReadRequest::to_vec("a.bin", 0, 100)]).unwrap();
    // An upper bound, not synchronization: the read must end by itself well before it.
    let rs = ticket.wait_timeout(Duration::from_secs(20)).expect("the stalled read ended");
    assert!(
        matches!(rs[0].bytes(), Err(Error::Remote { failure: RemoteFailure::Timeout, .. })),
        "{:?}",
        rs[0]
    );
    assert!(t0.elapsed() < Duration::from_secs(10), "took {:?}", t0.elapsed());
    let rs = s.submit(vec![ReadRequest::to_vec("a.bin", 0, 100)]).unwrap().wait();
    assert_eq!(rs[0].bytes(), Ok(100), "later reads are served");
}

#[test]
fn a_dropped_store_completes_its_pending_reads() {
    let dir = fixture_dir();
    let server = HttpServer::serve(dir.path()).unwrap();
    let s = http_store(&server, config());
    server.inject(Fault::Stall, 1, "a.bin");
    let ticket = s.submit(vec![ReadRequest::to_vec("a.bin", 0, 100)]).unwrap();
    drop(s);
    let rs = ticket.wait_timeout(Duration::from_secs(20)).expect("completed on drop");
    assert!(matches!(rs[0].bytes(), Err(Error::ShutDown { .. })), "{:?}", rs[0]);
}
