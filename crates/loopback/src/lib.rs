//! Object servers on 127.0.0.1 for the tests and `damacy bench --store s3`: a real
//! S3-compatible server ([`S3Server`], the `s3s-fs` implementation, with signed requests)
//! and a small HTTP file server ([`HttpServer`]) that answers ranged GETs and HEADs. Both
//! can delay every request ([`Server::set_latency`]) and inject faults
//! ([`Server::inject`]): error statuses, dropped connections, stalls, truncated bodies
//! and wrong `Content-Length`s.
//!
//! Each server runs on a tokio runtime of its own and stops when dropped: its listener
//! closes and every connection, a stalled one included, is dropped with it.

mod http;
mod s3;
mod state;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use http::HttpServer;
pub use s3::{ACCESS_KEY_ID, BUCKET, REGION, S3Server, SECRET_ACCESS_KEY};
pub use state::Fault;

use state::State;

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The runtime, the listener or the server's scratch directory failed.
    #[error("loopback server: {what}: {kind}")]
    Io { what: &'static str, kind: io::ErrorKind },
    /// The directory to serve is not a directory.
    #[error("loopback server: {} is not a directory", path.display())]
    NotADirectory { path: PathBuf },
}

impl Error {
    fn io(what: &'static str) -> impl FnOnce(io::Error) -> Error {
        move |e| Error::Io { what, kind: e.kind() }
    }
}

/// What the two servers share: an address, a runtime, and the fault and latency state.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    state: Arc<State>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Server {
    fn start<F, Fut>(what: &'static str, serve: F) -> Result<Self, Error>
    where
        F: FnOnce(tokio::net::TcpListener, Arc<State>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(what)
            .enable_io()
            .enable_time()
            .build()
            .map_err(Error::io("runtime"))?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", 0)))
            .map_err(Error::io("bind 127.0.0.1"))?;
        let addr = listener.local_addr().map_err(Error::io("local address"))?;
        let state = Arc::new(State::default());
        runtime.spawn(serve(listener, Arc::clone(&state)));
        Ok(Self { addr, state, runtime: Some(runtime) })
    }

    /// The address the server listens on (127.0.0.1, a free port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Delays every later request by `latency` before it is answered (requests overlap:
    /// the delay is per request, not a queue).
    pub fn set_latency(&self, latency: Duration) {
        self.state.set_latency(latency);
    }

    /// Answers the next `times` requests whose path contains `path_contains` with
    /// `fault` instead of the object.
    pub fn inject(&self, fault: Fault, times: usize, path_contains: &str) {
        self.state.inject(fault, times, path_contains);
    }

    /// Faults armed and not yet used.
    pub fn faults_left(&self) -> usize {
        self.state.faults_left()
    }

    /// Requests received so far (answered, faulted or pending).
    pub fn requests(&self) -> u64 {
        self.state.requests()
    }

    /// The most requests this server was answering at once (latency included).
    pub fn peak_in_flight(&self) -> u64 {
        self.state.peak_in_flight()
    }

    /// Requests whose path contained `path_contains`.
    pub fn requests_for(&self, path_contains: &str) -> u64 {
        self.state.requests_for(path_contains)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
