//! The injected latency, the armed faults and the request log a server shares with its
//! connection tasks.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A fault a server answers a request with instead of the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// This HTTP status with an empty body (503 for "slow down", 500, ...).
    Status(u16),
    /// The connection is closed (reset) after the request is read, without an answer.
    Reset,
    /// The request is read and never answered; the connection stays open until the
    /// client gives up (its timeout) or the server stops.
    Stall,
    /// The headers promise the whole range; half the body is sent, then the connection
    /// closes. (HTTP server only.)
    Truncate,
    /// `Content-Length` and the body are half the range while `Content-Range` claims all
    /// of it: a well-formed, short answer. (HTTP server only.)
    ShortLength,
}

#[derive(Debug)]
struct Armed {
    fault: Fault,
    left: usize,
    path_contains: String,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    latency_ns: AtomicU64,
    requests: AtomicU64,
    in_flight: AtomicU64,
    peak_in_flight: AtomicU64,
    armed: Mutex<Vec<Armed>>,
    paths: Mutex<Vec<String>>,
}

impl State {
    pub(crate) fn set_latency(&self, d: Duration) {
        self.latency_ns.store(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub(crate) fn latency(&self) -> Duration {
        Duration::from_nanos(self.latency_ns.load(Ordering::Relaxed))
    }

    pub(crate) fn inject(&self, fault: Fault, times: usize, path_contains: &str) {
        let mut armed = self.armed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        armed.push(Armed { fault, left: times, path_contains: path_contains.to_owned() });
    }

    pub(crate) fn faults_left(&self) -> usize {
        let armed = self.armed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        armed.iter().map(|a| a.left).sum()
    }

    /// Logs a request for `path` and takes the first fault armed for it, if any.
    pub(crate) fn on_request(&self, path: &str) -> Option<Fault> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.paths.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(path.to_owned());
        let mut armed = self.armed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let a = armed.iter_mut().find(|a| a.left > 0 && path.contains(&a.path_contains))?;
        a.left -= 1;
        Some(a.fault)
    }

    /// Counts a request as being answered until the guard drops.
    pub(crate) fn answering(&self) -> InFlight<'_> {
        let now = self.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        self.peak_in_flight.fetch_max(now, Ordering::AcqRel);
        InFlight(self)
    }

    pub(crate) fn peak_in_flight(&self) -> u64 {
        self.peak_in_flight.load(Ordering::Acquire)
    }

    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub(crate) fn requests_for(&self, path_contains: &str) -> u64 {
        let paths = self.paths.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        paths.iter().filter(|p| p.contains(path_contains)).count() as u64
    }
}

/// A request being answered; see [`State::answering`].
pub(crate) struct InFlight<'a>(&'a State);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
