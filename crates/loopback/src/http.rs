//! [`HttpServer`]: a small HTTP/1.1 file server on tokio (one request per connection)
//! answering `GET` with and without `Range` (`bytes=a-b`, `bytes=a-`, `bytes=-n`) and
//! `HEAD`, written by hand so that every fault is exactly the bytes on the wire.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::state::{Fault, State};
use crate::{Error, Server};

/// An HTTP file server on 127.0.0.1 serving a directory: `http://127.0.0.1:PORT/<path>`.
/// Every [`Fault`] applies.
#[derive(Debug)]
pub struct HttpServer {
    server: Server,
}

impl std::ops::Deref for HttpServer {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

impl HttpServer {
    /// Serves the files under `dir`.
    ///
    /// # Errors
    /// [`Error::NotADirectory`]; [`Error::Io`] when the runtime or the listener fails.
    pub fn serve(dir: &Path) -> Result<Self, Error> {
        if !dir.is_dir() {
            return Err(Error::NotADirectory { path: dir.to_owned() });
        }
        let root = dir.to_owned();
        let server = Server::start("loopback-http", move |listener, state| async move {
            let root = Arc::new(root);
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (root, state) = (Arc::clone(&root), Arc::clone(&state));
                tokio::spawn(async move {
                    // A connection that fails (the client hung up) ends only itself.
                    let _ = connection(stream, &root, &state).await;
                });
            }
        })?;
        Ok(Self { server })
    }
}

/// A parsed request line and the one header we use.
struct Request {
    head_only: bool,
    path: String,
    range: Option<String>,
}

async fn read_request(stream: &mut BufReader<TcpStream>) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    if stream.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else { return Ok(None) };
    let head_only = method.eq_ignore_ascii_case("HEAD");
    let mut range = None;
    loop {
        let mut h = String::new();
        if stream.read_line(&mut h).await? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((name, value)) = h.split_once(':')
            && name.trim().eq_ignore_ascii_case("range")
        {
            range = Some(value.trim().to_owned());
        }
    }
    let path = target.split('?').next().unwrap_or_default().to_owned();
    Ok(Some(Request { head_only, path, range }))
}

/// `[start, end)` of a `bytes=` range over `len` bytes; `Err(())` when unsatisfiable.
fn parse_range(spec: &str, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = spec.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    Some(match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            if n == 0 || len == 0 { Err(()) } else { Ok((len.saturating_sub(n), len)) }
        }
        (a, b) => {
            let a: u64 = a.parse().ok()?;
            let end =
                if b.is_empty() { len } else { b.parse::<u64>().ok()?.saturating_add(1).min(len) };
            if a >= len || a >= end { Err(()) } else { Ok((a, end)) }
        }
    })
}

fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    let rel = Path::new(path.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(root.join(rel))
}

async fn connection(stream: TcpStream, root: &Path, state: &State) -> std::io::Result<()> {
    let mut stream = BufReader::new(stream);
    let Some(req) = read_request(&mut stream).await? else { return Ok(()) };
    let _answering = state.answering();
    let latency = state.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let fault = state.on_request(&req.path);
    let mut out = stream.into_inner();
    match fault {
        Some(Fault::Status(code)) => {
            let head = format!(
                "HTTP/1.1 {code} Injected\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            return out.write_all(head.as_bytes()).await;
        }
        Some(Fault::Reset) => {
            // Linger 0: closing sends a reset, not an orderly end of stream.
            let _ = out.set_zero_linger();
            return Ok(());
        }
        Some(Fault::Stall) => std::future::pending::<()>().await,
        _ => {}
    }
    let file = resolve(root, &req.path);
    let meta = match &file {
        Some(p) => tokio::fs::metadata(p).await.ok().filter(std::fs::Metadata::is_file),
        None => None,
    };
    let (Some(file), Some(meta)) = (file, meta) else {
        let head = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        return out.write_all(head.as_bytes()).await;
    };
    let len = meta.len();
    let common = format!(
        "Last-Modified: Thu, 01 Jan 1970 00:00:00 GMT\r\nETag: \"{len:x}\"\r\nAccept-Ranges: bytes\r\nConnection: close\r\n"
    );
    let (status, start, end) = match req.range.as_deref().map(|r| parse_range(r, len)) {
        None | Some(None) => ("200 OK", 0, len),
        Some(Some(Ok((a, b)))) => ("206 Partial Content", a, b),
        Some(Some(Err(()))) => {
            let head = format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\n{common}\r\n"
            );
            return out.write_all(head.as_bytes()).await;
        }
    };
    let full = end - start;
    let (declared, sent) = match fault {
        Some(Fault::Truncate) => (full, full / 2),
        Some(Fault::ShortLength) => (full / 2, full / 2),
        _ => (full, full),
    };
    let range_header = if req.range.is_some() {
        format!("Content-Range: bytes {start}-{}/{len}\r\n", end.saturating_sub(1))
    } else {
        String::new()
    };
    let head =
        format!("HTTP/1.1 {status}\r\nContent-Length: {declared}\r\n{range_header}{common}\r\n");
    out.write_all(head.as_bytes()).await?;
    if req.head_only {
        return Ok(());
    }
    let mut f = tokio::fs::File::open(&file).await?;
    f.seek(std::io::SeekFrom::Start(start)).await?;
    let mut body = f.take(sent);
    tokio::io::copy(&mut body, &mut out).await?;
    out.flush().await?;
    if fault == Some(Fault::Truncate) {
        let _ = out.set_zero_linger();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_as_http_says() {
        assert_eq!(parse_range("bytes=0-9", 100), Some(Ok((0, 10))));
        assert_eq!(parse_range("bytes=90-200", 100), Some(Ok((90, 100))));
        assert_eq!(parse_range("bytes=95-", 100), Some(Ok((95, 100))));
        assert_eq!(parse_range("bytes=-10", 100), Some(Ok((90, 100))));
        assert_eq!(parse_range("bytes=-1000", 100), Some(Ok((0, 100))));
        assert_eq!(parse_range("bytes=100-", 100), Some(Err(())));
        assert_eq!(parse_range("bytes=-5", 0), Some(Err(())));
        assert_eq!(parse_range("items=0-1", 100), None);
        assert!(resolve(Path::new("/r"), "/a/../b").is_none());
        assert_eq!(resolve(Path::new("/r"), "/a/b"), Some(PathBuf::from("/r/a/b")));
    }
}
