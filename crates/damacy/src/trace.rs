//! A timeline of the pipeline's threads, per batch: what each thread did when, so that
//! what bounds throughput can be read where no profiler runs (the GPU host has no
//! `nsys`). Off unless started ([`Pipeline::start_trace`](crate::Pipeline::start_trace));
//! a span then costs a clock read and a short lock. Written as Chrome trace-event JSON
//! ([`Trace::to_chrome_json`]), which Perfetto and `chrome://tracing` open.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;

/// Spans kept at most: a long trace keeps its first ones and counts the rest.
pub const MAX_SPANS: usize = 1 << 20;

/// One span: a thread's step for a batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Span {
    /// The thread's name (`damacy-submit`, `damacy-harvest`, a preparer, the caller).
    pub thread: String,
    /// The step (see [`Pipeline::start_trace`](crate::Pipeline::start_trace)).
    pub name: &'static str,
    /// The batch's id (push order from 0), where the step has one.
    pub batch: Option<u64>,
    /// Microseconds from the start of the trace.
    pub start_us: f64,
    pub dur_us: f64,
}

/// The spans recorded between a start and a take, in the order they ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Trace {
    pub spans: Vec<Span>,
    /// Spans not kept once [`MAX_SPANS`] were.
    pub dropped: u64,
}

impl Trace {
    /// The trace as Chrome trace-event JSON: one complete event (`"ph": "X"`) per span,
    /// one track per thread, the batch id in the event's name and arguments.
    pub fn to_chrome_json(&self) -> String {
        let mut threads: Vec<&str> = Vec::new();
        let mut events = Vec::with_capacity(self.spans.len() + 8);
        for s in &self.spans {
            let tid = match threads.iter().position(|t| *t == s.thread) {
                Some(i) => i,
                None => {
                    threads.push(&s.thread);
                    threads.len() - 1
                }
            };
            let name = match s.batch {
                Some(b) => format!("{} {b}", s.name),
                None => s.name.to_string(),
            };
            events.push(serde_json::json!({
                "name": name, "cat": s.name, "ph": "X", "pid": 1, "tid": tid,
                "ts": s.start_us, "dur": s.dur_us, "args": { "batch": s.batch },
            }));
        }
        for (tid, t) in threads.iter().enumerate() {
            events.push(serde_json::json!({
                "name": "thread_name", "ph": "M", "pid": 1, "tid": tid, "args": { "name": t },
            }));
        }
        serde_json::json!({ "traceEvents": events, "dropped": self.dropped }).to_string()
    }
}

/// Locks `m`, through a poisoning: a span list is valid whatever a panicking thread did.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The recorder the pipeline's threads share (inside the stat counters).
#[derive(Debug)]
pub(crate) struct Tracer {
    on: AtomicBool,
    t0: Mutex<Instant>,
    spans: Mutex<Vec<Span>>,
    dropped: AtomicU64,
}

impl Default for Tracer {
    fn default() -> Self {
        Self {
            on: AtomicBool::new(false),
            t0: Mutex::new(Instant::now()),
            spans: Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
        }
    }
}

impl Tracer {
    /// Starts recording (again), from an empty trace.
    pub(crate) fn start(&self) {
        let mut spans = lock(&self.spans);
        spans.clear();
        *lock(&self.t0) = Instant::now();
        self.dropped.store(0, Ordering::Relaxed);
        self.on.store(true, Ordering::Release);
    }

    /// Stops recording and returns what was recorded.
    pub(crate) fn take(&self) -> Trace {
        self.on.store(false, Ordering::Release);
        let spans = std::mem::take(&mut *lock(&self.spans));
        Trace { spans, dropped: self.dropped.swap(0, Ordering::Relaxed) }
    }

    /// The start of a span, if recording.
    pub(crate) fn begin(&self) -> Option<Instant> {
        self.on.load(Ordering::Acquire).then(Instant::now)
    }

    /// Runs `f` as the span `name` (of `batch`): [`Tracer::begin`], `f`, [`Tracer::end`].
    pub(crate) fn span<T>(
        &self,
        name: &'static str,
        batch: Option<u64>,
        f: impl FnOnce() -> T,
    ) -> T {
        let began = self.begin();
        let out = f();
        self.end(name, batch, began);
        out
    }

    /// Ends the span `name` (of `batch`) begun at `began`, if it was begun while
    /// recording.
    pub(crate) fn end(&self, name: &'static str, batch: Option<u64>, began: Option<Instant>) {
        let Some(began) = began else { return };
        if !self.on.load(Ordering::Acquire) {
            return;
        }
        let end = Instant::now();
        let t0 = *lock(&self.t0);
        let us = |t: Instant| t.saturating_duration_since(t0).as_secs_f64() * 1e6;
        let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
        let span = Span { thread, name, batch, start_us: us(began), dur_us: us(end) - us(began) };
        let mut spans = lock(&self.spans);
        if spans.len() < MAX_SPANS {
            spans.push(span);
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_kept_only_while_recording_and_written_per_thread() {
        let t = Tracer::default();
        t.end("prepare", Some(1), t.begin());
        t.start();
        let b = t.begin();
        assert!(b.is_some());
        t.end("prepare", Some(2), b);
        let began = t.begin();
        std::thread::scope(|s| {
            let h = std::thread::Builder::new()
                .name("other".into())
                .spawn_scoped(s, || t.end("ready", None, began))
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(h.join().is_ok());
        });
        let trace = t.take();
        t.end("late", None, b);
        assert_eq!(trace.spans.len(), 2, "{trace:?}");
        assert_eq!((trace.spans[0].name, trace.spans[0].batch), ("prepare", Some(2)));
        assert_eq!((trace.spans[1].thread.as_str(), trace.spans[1].batch), ("other", None));
        assert!(trace.spans.iter().all(|s| s.dur_us >= 0.0 && s.start_us >= 0.0));
        let json: serde_json::Value =
            serde_json::from_str(&trace.to_chrome_json()).unwrap_or_else(|e| panic!("{e}"));
        let events = json["traceEvents"].as_array().map_or(0, Vec::len);
        // Two spans and a name record for each of the two threads.
        assert_eq!(events, 4);
        assert_eq!(json["traceEvents"][0]["name"], "prepare 2");
        assert!(t.take().spans.is_empty());
    }
}
