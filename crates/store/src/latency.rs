//! `LatencyStore`: wraps any store and delays each operation by a seeded
//! `baseline + min(cap, exp(mu + sigma * N(0,1)))`, to rehearse slow storage.
//!
//! Delays of concurrent operations overlap (the C predecessor slept on one thread and so
//! serialized them): a synchronous call sleeps on its caller's thread, and a submitted
//! read's completion is held back by a timer thread that fires every due read at once.

mod rng;

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::fmt;
use std::time::{Duration, Instant};

use crate::Store;
use crate::error::{Error, Result};
use crate::request::{ReadRequest, ReadResult, TrySubmitError};
use crate::stats::{OpKind, Recorder, StoreStats};
use crate::sync::{self, Arc, AtomicU64, Condvar, Mutex, Ordering, thread};
use crate::ticket::Ticket;

/// Parameters of the injected delay `baseline + min(cap, exp(mu + sigma * z))`, `z`
/// standard normal; `mu` and `sigma` are of the natural log of the delay in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyConfig {
    /// The floor every operation pays.
    pub baseline: Duration,
    /// Log-mean of the random part, ln(seconds). `f64::NEG_INFINITY` disables it.
    pub mu: f64,
    /// Log-standard-deviation of the random part.
    pub sigma: f64,
    /// Upper bound of the random part.
    pub cap: Duration,
    /// Seed of the sample stream.
    pub seed: u64,
}

impl LatencyConfig {
    /// Exactly `delay` per operation.
    pub fn fixed(delay: Duration) -> Self {
        Self { baseline: delay, mu: f64::NEG_INFINITY, sigma: 0.0, cap: Duration::ZERO, seed: 0 }
    }

    /// `baseline` plus a lognormal part with the given median and log-standard-deviation,
    /// capped at `cap`.
    pub fn lognormal(
        baseline: Duration,
        median: Duration,
        sigma: f64,
        cap: Duration,
        seed: u64,
    ) -> Self {
        Self { baseline, mu: median.as_secs_f64().ln(), sigma, cap, seed }
    }

    /// # Errors
    /// [`Error::InvalidConfig`] for a NaN `mu` or a negative or non-finite `sigma`.
    pub fn validate(&self) -> Result<()> {
        if self.mu.is_nan() {
            return Err(Error::InvalidConfig {
                field: "mu",
                value: "NaN".into(),
                reason: "must be a number",
            });
        }
        if !(self.sigma.is_finite() && self.sigma >= 0.0) {
            return Err(Error::InvalidConfig {
                field: "sigma",
                value: self.sigma.to_string(),
                reason: "must be finite and >= 0",
            });
        }
        Ok(())
    }
}

/// The delay distribution as a pure function of the sample index: the same seed gives
/// the same delays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DelayModel {
    config: LatencyConfig,
}

impl DelayModel {
    /// # Errors
    /// As [`LatencyConfig::validate`].
    pub fn new(config: LatencyConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }

    /// The `n`-th delay of the stream.
    pub fn delay(&self, n: u64) -> Duration {
        let c = &self.config;
        let z = rng::standard_normal(c.seed, n);
        let random = (c.mu + c.sigma * z).exp().min(c.cap.as_secs_f64());
        // exp is >= 0 or NaN (-inf * 0 cannot happen: sigma is finite); NaN becomes 0.
        let random = Duration::try_from_secs_f64(random).unwrap_or(Duration::ZERO);
        c.baseline.saturating_add(random)
    }
}

/// A scheduled completion.
struct Due {
    at: Instant,
    seq: u64,
    action: Box<dyn FnOnce() + Send>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    // Reversed: BinaryHeap is a max-heap and the earliest deadline must be on top.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

#[derive(Default)]
struct TimerState {
    heap: BinaryHeap<Due>,
    seq: u64,
    closed: bool,
}

#[derive(Default)]
struct Timer {
    state: Mutex<TimerState>,
    changed: Condvar,
}

impl Timer {
    /// Runs `action` at `at` on the timer thread; at once, here, once the timer closed
    /// (so a completion scheduled during teardown still happens).
    fn schedule(&self, at: Instant, action: Box<dyn FnOnce() + Send>) {
        let mut st = sync::lock(&self.state);
        if st.closed {
            drop(st);
            action();
            return;
        }
        st.seq += 1;
        let seq = st.seq;
        let earliest = st.heap.peek().is_none_or(|top| at < top.at);
        st.heap.push(Due { at, seq, action });
        drop(st);
        if earliest {
            self.changed.notify_one();
        }
    }

    fn run(&self) {
        let mut st = sync::lock(&self.state);
        loop {
            let now = Instant::now();
            let mut due = Vec::new();
            while st.heap.peek().is_some_and(|top| top.at <= now || st.closed) {
                if let Some(d) = st.heap.pop() {
                    due.push(d);
                }
            }
            if !due.is_empty() {
                // Actions complete tickets and may run user callbacks: never under the lock.
                drop(st);
                for d in due {
                    (d.action)();
                }
                st = sync::lock(&self.state);
                continue;
            }
            if st.closed {
                return;
            }
            st = match st.heap.peek() {
                Some(top) => {
                    let left = top.at.saturating_duration_since(now);
                    sync::wait_timeout(&self.changed, st, left)
                }
                None => sync::wait(&self.changed, st),
            };
        }
    }

    fn close(&self) {
        sync::lock(&self.state).closed = true;
        self.changed.notify_all();
    }
}

/// A [`Store`] that delays every operation of an inner store. See the module docs.
pub struct LatencyStore<S: Store> {
    inner: S,
    model: DelayModel,
    samples: AtomicU64,
    timer: Arc<Timer>,
    timer_thread: Option<thread::JoinHandle<()>>,
    stats: Arc<Recorder>,
}

impl<S: Store> fmt::Debug for LatencyStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatencyStore")
            .field("inner", &self.inner)
            .field("model", &self.model)
            .finish()
    }
}

impl<S: Store> LatencyStore<S> {
    /// Wraps `inner`.
    ///
    /// # Errors
    /// An invalid `config`, or [`Error::SpawnThread`] when the timer thread cannot start.
    pub fn new(inner: S, config: LatencyConfig) -> Result<Self> {
        let model = DelayModel::new(config)?;
        let timer = Arc::new(Timer::default());
        let t = timer.clone();
        let handle =
            thread::Builder::new().name("store-latency".into()).spawn(move || t.run()).map_err(
                |e| Error::SpawnThread { index: 0, kind: e.kind(), raw_os_error: e.raw_os_error() },
            )?;
        Ok(Self {
            inner,
            model,
            samples: AtomicU64::new(0),
            timer,
            timer_thread: Some(handle),
            stats: Arc::new(Recorder::new()),
        })
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn next_delay(&self) -> Duration {
        self.model.delay(self.samples.fetch_add(1, Ordering::Relaxed))
    }

    /// Runs a synchronous operation after its delay, on the caller's thread.
    fn delayed<T>(
        &self,
        kind: OpKind,
        bytes: impl Fn(&T) -> usize,
        op: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let t0 = Instant::now();
        self.stats.enter(1);
        sync::sleep(self.next_delay());
        let out = op();
        if out.is_err() {
            self.stats.error();
        }
        self.stats.op(kind, t0.elapsed(), out.as_ref().map_or(0, bytes));
        self.stats.exit();
        out
    }

    /// A ticket that completes each read of `inner` its delay after the inner read did.
    fn chain(&self, inner: Ticket, n: usize) -> Ticket {
        let (outer, completer) = Ticket::new(n);
        let delays: Vec<Duration> = (0..n).map(|_| self.next_delay()).collect();
        let timer = self.timer.clone();
        let stats = self.stats.clone();
        let t0 = Instant::now();
        stats.submitted(n);
        stats.enter(n);
        inner.on_complete(move |results: Vec<ReadResult>| {
            let done = Instant::now();
            for (i, (r, d)) in results.into_iter().zip(delays).enumerate() {
                let c = completer.clone();
                let stats = stats.clone();
                let at = done.checked_add(d).unwrap_or(done);
                timer.schedule(
                    at,
                    Box::new(move || {
                        stats.op(OpKind::Part, t0.elapsed(), r.outcome.as_ref().map_or(0, |n| *n));
                        if r.outcome.is_err() {
                            stats.error();
                        }
                        c.complete(i, r);
                        stats.exit();
                    }),
                );
            }
        });
        outer
    }
}

impl<S: Store> Store for LatencyStore<S> {
    fn stat(&self, key: &str) -> Result<Option<u64>> {
        self.delayed(OpKind::Stat, |_| 0, || self.inner.stat(key))
    }

    fn read(&self, key: &str, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.delayed(OpKind::Read, |n| *n, || self.inner.read(key, offset, buf))
    }

    fn read_exact(&self, key: &str, offset: u64, buf: &mut [u8]) -> Result<()> {
        let len = buf.len();
        self.delayed(OpKind::Read, |_| len, || self.inner.read_exact(key, offset, buf))
    }

    fn read_all(&self, key: &str) -> Result<Vec<u8>> {
        self.delayed(OpKind::ReadAll, Vec::len, || self.inner.read_all(key))
    }

    fn submit(&self, reads: Vec<ReadRequest>) -> Result<Ticket> {
        let n = reads.len();
        let inner = self.inner.submit(reads)?;
        Ok(self.chain(inner, n))
    }

    fn try_submit(&self, reads: Vec<ReadRequest>) -> Result<Ticket, TrySubmitError> {
        let n = reads.len();
        match self.inner.try_submit(reads) {
            Ok(inner) => Ok(self.chain(inner, n)),
            Err(e) => {
                if matches!(e, TrySubmitError::Again(_)) {
                    self.stats.again();
                }
                Err(e)
            }
        }
    }

    fn merge_gap_hint(&self, key: &str) -> u64 {
        self.inner.merge_gap_hint(key)
    }

    /// Always: this store exists to make every request wait.
    fn wants_read_ahead(&self, _key: &str) -> bool {
        true
    }

    /// This store's operation counts and latencies (delays included); opens and fd-cache
    /// counters come from the inner store.
    fn stats(&self) -> StoreStats {
        let mut s = self.stats.snapshot();
        let i = self.inner.stats();
        s.opens = i.opens;
        s.uncached_opens = i.uncached_opens;
        s.fd_hits = i.fd_hits;
        s.fd_misses = i.fd_misses;
        s.fd_open_waits = i.fd_open_waits;
        s.fd_evictions = i.fd_evictions;
        s
    }
}

impl<S: Store> Drop for LatencyStore<S> {
    fn drop(&mut self) {
        // Pending completions fire now (their I/O is done; only the delay is cut short),
        // and completions that arrive later fire inline: no ticket is left hanging.
        self.timer.close();
        if let Some(h) = self.timer_thread.take()
            && h.thread().id() != thread::current().id()
        {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_seeded_floored_and_capped() {
        let cfg = LatencyConfig::lognormal(
            Duration::from_millis(2),
            Duration::from_millis(5),
            1.0,
            Duration::from_millis(40),
            7,
        );
        let a = DelayModel::new(cfg).unwrap();
        let b = DelayModel::new(cfg).unwrap();
        let c = DelayModel::new(LatencyConfig { seed: 8, ..cfg }).unwrap();
        let da: Vec<_> = (0..10_000).map(|i| a.delay(i)).collect();
        let db: Vec<_> = (0..10_000).map(|i| b.delay(i)).collect();
        let dc: Vec<_> = (0..10_000).map(|i| c.delay(i)).collect();
        assert_eq!(da, db, "same seed, same delays");
        assert_ne!(da, dc, "another seed, other delays");
        assert!(
            da.iter().all(|d| *d >= Duration::from_millis(2) && *d <= Duration::from_millis(42))
        );
        let mut sorted = da.clone();
        sorted.sort();
        // Median of baseline + lognormal(median 5 ms) is 7 ms; allow sampling noise.
        let median = sorted[sorted.len() / 2];
        assert!(
            median > Duration::from_micros(6_500) && median < Duration::from_micros(7_500),
            "{median:?}"
        );
        // sigma = 1 puts ~1.3% above the 40 ms cap (ln 8 = 2.08 sigma): the cap bites.
        assert!(sorted.iter().filter(|d| **d == Duration::from_millis(42)).count() > 50);
    }

    #[test]
    fn fixed_config_is_exactly_the_baseline_and_bad_configs_are_refused() {
        let m = DelayModel::new(LatencyConfig::fixed(Duration::from_millis(3))).unwrap();
        assert!((0..100).all(|i| m.delay(i) == Duration::from_millis(3)));
        let bad = LatencyConfig { sigma: -1.0, ..LatencyConfig::fixed(Duration::ZERO) };
        assert!(matches!(DelayModel::new(bad), Err(Error::InvalidConfig { field: "sigma", .. })));
        let bad = LatencyConfig { mu: f64::NAN, ..LatencyConfig::fixed(Duration::ZERO) };
        assert!(matches!(DelayModel::new(bad), Err(Error::InvalidConfig { field: "mu", .. })));
    }
}
