//! [`S3Server`]: `s3s-fs` (a real S3 implementation over a directory) behind hyper on
//! 127.0.0.1, serving one directory as bucket [`BUCKET`], with signature checks on.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper_util::rt::TokioIo;

use crate::state::{Fault, State};
use crate::{Error, Server};

/// The bucket the served directory appears as.
pub const BUCKET: &str = "damacy";
/// The access key the server accepts (and the only one).
pub const ACCESS_KEY_ID: &str = "damacy-loopback";
/// Its secret.
pub const SECRET_ACCESS_KEY: &str = "damacy-loopback-secret";
/// The region clients should sign for.
pub const REGION: &str = "us-east-1";

/// An S3-compatible server on 127.0.0.1 serving a directory as bucket [`BUCKET`]:
/// `s3://damacy/<path under the directory>`. Faults it can inject: [`Fault::Status`],
/// [`Fault::Reset`], [`Fault::Stall`].
#[derive(Debug)]
pub struct S3Server {
    server: Server,
    /// The server's root: the bucket (a link to the served directory) and the
    /// server's per-object records.
    _root: tempfile::TempDir,
}

impl std::ops::Deref for S3Server {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

impl S3Server {
    /// Serves `dir` as bucket [`BUCKET`]. Files are served in place, not copied.
    ///
    /// # Errors
    /// [`Error::NotADirectory`]; [`Error::Io`] when the scratch root, the runtime or the
    /// listener fails.
    pub fn serve(dir: &Path) -> Result<Self, Error> {
        if !dir.is_dir() {
            return Err(Error::NotADirectory { path: dir.to_owned() });
        }
        let dir = dir.canonicalize().map_err(Error::io("canonicalize the served directory"))?;
        let root = tempfile::tempdir().map_err(Error::io("scratch root"))?;
        std::os::unix::fs::symlink(&dir, root.path().join(BUCKET))
            .map_err(Error::io("link the bucket"))?;
        record_etags(root.path(), &dir).map_err(Error::io("record object etags"))?;
        let fs = s3s_fs::FileSystem::new(root.path()).map_err(|_| Error::Io {
            what: "open the s3s-fs root",
            kind: std::io::ErrorKind::Other,
        })?;
        let mut b = s3s::service::S3ServiceBuilder::new(fs);
        b.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY_ID, SECRET_ACCESS_KEY));
        let service = b.build();
        let server =
            Server::start("loopback-s3", move |listener, state| accept(listener, state, service))?;
        Ok(Self { server, _root: root })
    }

    /// The environment-style options a client needs for this server: endpoint,
    /// credentials, region, plain HTTP.
    pub fn client_options(&self) -> Vec<(&'static str, String)> {
        vec![
            ("aws_endpoint", self.endpoint()),
            ("aws_access_key_id", ACCESS_KEY_ID.to_owned()),
            ("aws_secret_access_key", SECRET_ACCESS_KEY.to_owned()),
            ("aws_region", REGION.to_owned()),
            ("aws_allow_http", "true".to_owned()),
        ]
    }
}

async fn accept(
    listener: tokio::net::TcpListener,
    state: Arc<State>,
    service: s3s::service::S3Service,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let (state, service) = (Arc::clone(&state), service.clone());
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (state, service) = (Arc::clone(&state), service.clone());
                    async move {
                        let _answering = state.answering();
                        let latency = state.latency();
                        if !latency.is_zero() {
                            tokio::time::sleep(latency).await;
                        }
                        match state.on_request(req.uri().path()) {
                            None => service.call(req.map(s3s::Body::from)).await,
                            Some(Fault::Status(code)) => {
                                let mut resp = hyper::Response::new(s3s::Body::empty());
                                *resp.status_mut() = hyper::StatusCode::from_u16(code)
                                    .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
                                Ok(resp)
                            }
                            // The stalled answer never comes; the connection task is dropped
                            // with the runtime or when the client hangs up.
                            Some(Fault::Stall) => std::future::pending().await,
                            Some(Fault::Reset | Fault::Truncate | Fault::ShortLength) => {
                                Err(s3s::HttpError::new(Box::new(std::io::Error::from(
                                    std::io::ErrorKind::ConnectionReset,
                                ))))
                            }
                        }
                    }
                });
            // A failed connection (the client hung up, a reset fault) ends only itself.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Records an ETag for every file under `dir` where `s3s-fs` looks for one, so that a
/// GET does not hash the whole object first (it does for objects it did not write, which
/// would make every ranged read of a large shard cost a full read). The tag is derived
/// from the path, length and modification time: it changes when the file does.
fn record_etags(root: &Path, dir: &Path) -> std::io::Result<()> {
    let mut stack: Vec<PathBuf> = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let ty = entry.file_type()?;
            let path = entry.path();
            if ty.is_dir() {
                stack.push(path);
                continue;
            }
            let Ok(rel) = path.strip_prefix(dir) else { continue };
            let Some(key) = rel.to_str() else { continue };
            let meta = entry.metadata()?;
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            let tag = format!("{:016x}{:016x}", fnv1a(key.as_bytes()) ^ meta.len(), mtime as u64);
            let name = format!(
                ".bucket-{}.object-{}.internal.json",
                b64url(BUCKET.as_bytes()),
                b64url(key.as_bytes())
            );
            std::fs::write(root.join(name), format!("{{\"e_tag\":\"{tag}\"}}"))?;
        }
    }
    Ok(())
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// URL-safe base64 without padding, as `s3s-fs` names its per-object records.
fn b64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = c.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=c.len() {
            out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_4648_url_alphabet() {
        assert_eq!(b64url(b""), "");
        assert_eq!(b64url(b"f"), "Zg");
        assert_eq!(b64url(b"fo"), "Zm8");
        assert_eq!(b64url(b"foo"), "Zm9v");
        assert_eq!(b64url(b"foob"), "Zm9vYg");
        assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
    }
}
