//! Store statistics: operation and byte counts, opens and fd-cache hits, the in-flight
//! high-water mark, and a log2 latency histogram per operation kind.

use std::time::Duration;

use crate::sync::{AtomicU64, Ordering};

/// The kinds of operation whose latency is recorded separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// [`Store::stat`](crate::Store::stat).
    Stat,
    /// [`Store::read`](crate::Store::read) (the whole call, all parts).
    Read,
    /// [`Store::read_all`](crate::Store::read_all).
    ReadAll,
    /// One part of a submitted or synchronous read, as run on an I/O thread (fd
    /// acquire, any open, and the `pread`s). For a wrapper such as
    /// [`LatencyStore`](crate::LatencyStore): one submitted read, submit to completion.
    Part,
}

impl OpKind {
    /// Every kind, in the order of [`StoreStats::latency`].
    pub const ALL: [OpKind; 4] = [OpKind::Stat, OpKind::Read, OpKind::ReadAll, OpKind::Part];

    fn index(self) -> usize {
        match self {
            OpKind::Stat => 0,
            OpKind::Read => 1,
            OpKind::ReadAll => 2,
            OpKind::Part => 3,
        }
    }
}

/// Number of log2 buckets: bucket `i` counts latencies `d` with `2^i <= d_ns < 2^(i+1)`
/// (bucket 0 also holds 0 ns). 64 buckets cover every `u64` of nanoseconds.
pub const HISTOGRAM_BUCKETS: usize = 64;

/// A log2 latency histogram in nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// `buckets[i]` counts latencies in `[2^i, 2^(i+1))` ns.
    pub buckets: [u64; HISTOGRAM_BUCKETS],
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self { buckets: [0; HISTOGRAM_BUCKETS] }
    }
}

impl LatencyHistogram {
    /// The bucket a latency falls in.
    pub fn bucket_of(d: Duration) -> usize {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        // ilog2 of 0 is undefined; 0 ns shares bucket 0 with 1 ns.
        ns.checked_ilog2().map_or(0, |b| b as usize)
    }

    /// Total number of samples.
    pub fn count(&self) -> u64 {
        self.buckets.iter().fold(0u64, |a, &b| a.saturating_add(b))
    }

    /// The upper bound (exclusive) of the bucket holding the `q`-quantile, so the true
    /// quantile is at most this and at least half of it. `None` when empty or `q` is not
    /// in `[0, 1]`.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.count();
        if total == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        // The rank of the sample we want, 1-based; ceil so that q = 0.5 of 2 samples is the 1st.
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen = seen.saturating_add(n);
            if seen >= rank {
                let upper = 1u64.checked_shl(i as u32 + 1).unwrap_or(u64::MAX);
                return Some(Duration::from_nanos(upper));
            }
        }
        None
    }

    /// Median (bucket upper bound).
    pub fn p50(&self) -> Option<Duration> {
        self.quantile(0.5)
    }

    /// 90th percentile (bucket upper bound).
    pub fn p90(&self) -> Option<Duration> {
        self.quantile(0.9)
    }

    /// 99th percentile (bucket upper bound).
    pub fn p99(&self) -> Option<Duration> {
        self.quantile(0.99)
    }
}

/// A snapshot of a store's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Completed operations per kind, indexed like [`OpKind::ALL`].
    pub ops: [u64; 4],
    /// Operations (of any kind) that ended in an error (`NotFound` included, a stat of an
    /// absent key excluded).
    pub errors: u64,
    /// Reads handed to `submit`/`try_submit`.
    pub submitted_reads: u64,
    /// `try_submit` calls refused with `Again` (back-pressure, not failure).
    pub again: u64,
    /// Bytes delivered into buffers by reads of every kind.
    pub bytes_read: u64,
    /// `open(2)` calls, cached or not.
    pub opens: u64,
    /// Opens done outside the fd cache because every cached fd was pinned.
    pub uncached_opens: u64,
    /// fd-cache lookups that found an open fd.
    pub fd_hits: u64,
    /// fd-cache lookups that had to open (or join another thread's open).
    pub fd_misses: u64,
    /// Lookups that waited for another thread's open of the same file (single flight).
    pub fd_open_waits: u64,
    /// Cached fds closed to make room.
    pub fd_evictions: u64,
    /// Most operations in flight at once (sync calls plus submitted reads not yet complete).
    pub inflight_high_water: u64,
    /// Latency histogram per kind, indexed like [`OpKind::ALL`].
    pub latency: [LatencyHistogram; 4],
}

impl StoreStats {
    /// Completed operations of `kind`.
    pub fn ops(&self, kind: OpKind) -> u64 {
        self.ops[kind.index()]
    }

    /// Latency histogram of `kind`.
    pub fn latency(&self, kind: OpKind) -> &LatencyHistogram {
        &self.latency[kind.index()]
    }

    /// Adds `other`'s counts to these (the high-water mark takes the larger: the stores
    /// may not have peaked together).
    pub fn merge(&mut self, other: &StoreStats) {
        for (a, b) in self.ops.iter_mut().zip(other.ops) {
            *a = a.saturating_add(b);
        }
        for (a, b) in [
            (&mut self.errors, other.errors),
            (&mut self.submitted_reads, other.submitted_reads),
            (&mut self.again, other.again),
            (&mut self.bytes_read, other.bytes_read),
            (&mut self.opens, other.opens),
            (&mut self.uncached_opens, other.uncached_opens),
            (&mut self.fd_hits, other.fd_hits),
            (&mut self.fd_misses, other.fd_misses),
            (&mut self.fd_open_waits, other.fd_open_waits),
            (&mut self.fd_evictions, other.fd_evictions),
        ] {
            *a = a.saturating_add(b);
        }
        self.inflight_high_water = self.inflight_high_water.max(other.inflight_high_water);
        for (h, o) in self.latency.iter_mut().zip(&other.latency) {
            for (a, b) in h.buckets.iter_mut().zip(o.buckets) {
                *a = a.saturating_add(b);
            }
        }
    }
}

/// Lock-free counters behind [`StoreStats`].
#[derive(Debug)]
pub(crate) struct Recorder {
    ops: [AtomicU64; 4],
    errors: AtomicU64,
    submitted_reads: AtomicU64,
    again: AtomicU64,
    bytes_read: AtomicU64,
    pub(crate) opens: AtomicU64,
    pub(crate) uncached_opens: AtomicU64,
    pub(crate) fd_hits: AtomicU64,
    pub(crate) fd_misses: AtomicU64,
    pub(crate) fd_open_waits: AtomicU64,
    pub(crate) fd_evictions: AtomicU64,
    inflight: AtomicU64,
    inflight_high_water: AtomicU64,
    latency: Vec<AtomicU64>,
}

fn zeros<const N: usize>() -> [AtomicU64; N] {
    std::array::from_fn(|_| AtomicU64::new(0))
}

impl Recorder {
    pub(crate) fn new() -> Self {
        Self {
            ops: zeros(),
            errors: AtomicU64::new(0),
            submitted_reads: AtomicU64::new(0),
            again: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            opens: AtomicU64::new(0),
            uncached_opens: AtomicU64::new(0),
            fd_hits: AtomicU64::new(0),
            fd_misses: AtomicU64::new(0),
            fd_open_waits: AtomicU64::new(0),
            fd_evictions: AtomicU64::new(0),
            inflight: AtomicU64::new(0),
            inflight_high_water: AtomicU64::new(0),
            latency: (0..4 * HISTOGRAM_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Records one finished operation that delivered `bytes` bytes.
    pub(crate) fn op(&self, kind: OpKind, elapsed: Duration, bytes: usize) {
        self.ops[kind.index()].fetch_add(1, Ordering::Relaxed);
        let b = kind.index() * HISTOGRAM_BUCKETS + LatencyHistogram::bucket_of(elapsed);
        if let Some(slot) = self.latency.get(b) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
        self.bytes_read.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Records one operation (a stat, or a whole read) that ended in an error.
    pub(crate) fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn submitted(&self, n: usize) {
        self.submitted_reads.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn again(&self) {
        self.again.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` operations start.
    pub(crate) fn enter(&self, n: usize) {
        let now = self.inflight.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        self.inflight_high_water.fetch_max(now, Ordering::Relaxed);
    }

    /// One operation ends.
    pub(crate) fn exit(&self) {
        self.inflight.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> StoreStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut latency: [LatencyHistogram; 4] = Default::default();
        for (k, h) in latency.iter_mut().enumerate() {
            for (i, b) in h.buckets.iter_mut().enumerate() {
                *b = self.latency.get(k * HISTOGRAM_BUCKETS + i).map_or(0, get);
            }
        }
        StoreStats {
            ops: std::array::from_fn(|i| get(&self.ops[i])),
            errors: get(&self.errors),
            submitted_reads: get(&self.submitted_reads),
            again: get(&self.again),
            bytes_read: get(&self.bytes_read),
            opens: get(&self.opens),
            uncached_opens: get(&self.uncached_opens),
            fd_hits: get(&self.fd_hits),
            fd_misses: get(&self.fd_misses),
            fd_open_waits: get(&self.fd_open_waits),
            fd_evictions: get(&self.fd_evictions),
            inflight_high_water: get(&self.inflight_high_water),
            latency,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_log2_of_nanoseconds() {
        assert_eq!(LatencyHistogram::bucket_of(Duration::ZERO), 0);
        assert_eq!(LatencyHistogram::bucket_of(Duration::from_nanos(1)), 0);
        assert_eq!(LatencyHistogram::bucket_of(Duration::from_nanos(2)), 1);
        assert_eq!(LatencyHistogram::bucket_of(Duration::from_nanos(1023)), 9);
        assert_eq!(LatencyHistogram::bucket_of(Duration::from_nanos(1024)), 10);
        assert_eq!(LatencyHistogram::bucket_of(Duration::MAX), 63);
    }

    #[test]
    fn quantiles_report_the_bucket_upper_bound() {
        let r = Recorder::new();
        // 90 fast ops (~1 µs, bucket 9..10) and 10 slow ones (~1 ms, bucket 19).
        for _ in 0..90 {
            r.op(OpKind::Part, Duration::from_nanos(1000), 10);
        }
        for _ in 0..10 {
            r.op(OpKind::Part, Duration::from_micros(1000), 10);
            r.error();
        }
        let s = r.snapshot();
        let h = s.latency(OpKind::Part);
        assert_eq!(h.count(), 100);
        assert_eq!(h.p50(), Some(Duration::from_nanos(1024)));
        assert_eq!(h.p90(), Some(Duration::from_nanos(1024)));
        assert_eq!(h.p99(), Some(Duration::from_nanos(1 << 20)));
        assert_eq!(s.ops(OpKind::Part), 100);
        assert_eq!(s.ops(OpKind::Read), 0);
        assert_eq!(s.bytes_read, 1000);
        assert_eq!(s.errors, 10);
        assert_eq!(s.latency(OpKind::Stat).p50(), None);
    }

    #[test]
    fn high_water_mark_keeps_the_peak() {
        let r = Recorder::new();
        r.enter(3);
        r.exit();
        r.enter(1);
        r.exit();
        r.exit();
        r.exit();
        assert_eq!(r.snapshot().inflight_high_water, 3);
    }
}
