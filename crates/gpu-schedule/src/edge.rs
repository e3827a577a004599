//! The declared edge table: every cross-stream or host↔stream dependency is a named entry,
//! and every record, publish and wait goes through it, checked against its declaration.

use std::fmt;
use std::time::Duration;

use crate::backend::host::HostCounter;
use crate::backend::{Backend, StallMeter};
use crate::error::{Error, Result};
use crate::sync::{Arc, AtomicBool, AtomicU64, Mutex, Ordering, lock};

pub(crate) mod decl;

pub use decl::{EdgeDecl, EdgeKind, Endpoint};

/// A declared edge, returned by [`EdgeTable::declare`]; pass it back to record and wait.
pub struct Edge<B: Backend> {
    decl: EdgeDecl,
    slots: Vec<EdgeSlot<B>>,
    meter: Arc<StallMeter>,
    signals: AtomicU64,
}

impl<B: Backend> fmt::Debug for Edge<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Edge").field("decl", &self.decl).field("slots", &self.slots.len()).finish()
    }
}

struct EdgeSlot<B: Backend> {
    sync: SlotSync<B>,
    /// Set once anything recorded or published on this slot.
    signaled: AtomicBool,
    /// Highest value published so far (counters), so waits can be checked at teardown.
    published: AtomicU64,
    /// Set once anything waited on this slot.
    waited: AtomicBool,
    /// Highest value waited for (counters).
    wanted: AtomicU64,
}

enum SlotSync<B: Backend> {
    Event(B::Event),
    Counter(B::Counter),
    Host(HostCounter),
}

impl<B: Backend> Edge<B> {
    /// The declaration.
    pub fn decl(&self) -> &EdgeDecl {
        &self.decl
    }

    fn slot(&self, slot: usize) -> Result<&EdgeSlot<B>> {
        self.slots.get(slot).ok_or(Error::SlotOutOfRange {
            what: "edge",
            name: self.decl.name,
            slot,
            slots: self.slots.len(),
        })
    }

    fn check(&self, role: &'static str, declared: Endpoint, actual: Endpoint) -> Result<()> {
        if declared == actual {
            Ok(())
        } else {
            Err(Error::WrongEndpoint {
                edge: self.decl.name,
                role,
                declared: declared.to_string(),
                actual: actual.to_string(),
            })
        }
    }

    fn wrong_kind(&self, op: &'static str) -> Error {
        Error::WrongEdgeKind { edge: self.decl.name, kind: self.decl.kind, op }
    }
}

/// Statistics of one edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeStats {
    /// The edge's name.
    pub name: &'static str,
    /// Records or publishes made.
    pub signals: u64,
    /// Waits made.
    pub waits: u64,
    /// Time waits stalled (host-side waits exactly; stream waits where the backend can see them).
    pub stall: Duration,
}

/// A problem found at teardown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TeardownFinding {
    /// Recorded or published but never waited on: either the edge is not needed, or a
    /// consumer forgot its wait (the race the table exists to catch).
    DeadEdge {
        /// The edge.
        edge: &'static str,
        /// The slot.
        slot: usize,
    },
    /// A counter edge waited for a value that was never published.
    NeverPublished {
        /// The edge.
        edge: &'static str,
        /// The slot.
        slot: usize,
        /// The value waited for.
        wanted: u64,
        /// The highest value published.
        published: u64,
    },
}

/// The table of declared edges for one backend and slot count.
pub struct EdgeTable<B: Backend> {
    backend: Arc<B>,
    slots: usize,
    edges: Mutex<Vec<Arc<Edge<B>>>>,
}

impl<B: Backend> fmt::Debug for EdgeTable<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EdgeTable")
            .field("slots", &self.slots)
            .field("edges", &lock(&self.edges).len())
            .finish()
    }
}

impl<B: Backend> EdgeTable<B> {
    /// An empty table; per-slot edges get `slots` instances.
    ///
    /// # Errors
    /// [`Error::NoSlots`] when `slots` is zero.
    pub fn new(backend: Arc<B>, slots: usize) -> Result<Self> {
        if slots == 0 {
            return Err(Error::NoSlots { name: "edge table" });
        }
        Ok(Self { backend, slots, edges: Mutex::new(Vec::new()) })
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<B> {
        &self.backend
    }

    /// Slots per per-slot edge.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Declares an edge and creates its events or counters.
    ///
    /// # Errors
    /// [`Error::DuplicateName`] for a name already declared; a backend error.
    pub fn declare(&self, decl: EdgeDecl) -> Result<Arc<Edge<B>>> {
        let n = if decl.per_slot { self.slots } else { 1 };
        self.declare_slots(decl, n)
    }

    /// Declares a per-slot edge with its own slot count (a pool's edge has one instance per
    /// pool slot, whatever the table's default).
    ///
    /// # Errors
    /// [`Error::NoSlots`] when `slots` is zero; as for [`EdgeTable::declare`].
    pub fn declare_slots(&self, decl: EdgeDecl, slots: usize) -> Result<Arc<Edge<B>>> {
        if slots == 0 {
            return Err(Error::NoSlots { name: decl.name });
        }
        if lock(&self.edges).iter().any(|e| e.decl.name == decl.name) {
            return Err(Error::DuplicateName { name: decl.name });
        }
        let n = slots;
        let mut slots = Vec::with_capacity(n);
        for _ in 0..n {
            let sync = match decl.kind {
                EdgeKind::Event => SlotSync::Event(self.backend.create_event()?),
                EdgeKind::GenCounter => SlotSync::Counter(self.backend.create_counter(decl.name)?),
                EdgeKind::HostRule => SlotSync::Host(HostCounter::new(decl.name)),
            };
            slots.push(EdgeSlot {
                sync,
                signaled: AtomicBool::new(false),
                published: AtomicU64::new(0),
                waited: AtomicBool::new(false),
                wanted: AtomicU64::new(0),
            });
        }
        let edge = Arc::new(Edge {
            decl,
            slots,
            meter: Arc::new(StallMeter::default()),
            signals: AtomicU64::new(0),
        });
        let mut edges = lock(&self.edges);
        // Checked again under the lock: two threads may declare the same name at once.
        if edges.iter().any(|e| e.decl.name == decl.name) {
            return Err(Error::DuplicateName { name: decl.name });
        }
        edges.push(Arc::clone(&edge));
        Ok(edge)
    }

    fn signaled(edge: &Edge<B>, s: &EdgeSlot<B>, value: u64) {
        s.signaled.store(true, Ordering::Release);
        s.published.fetch_max(value, Ordering::AcqRel);
        edge.signals.fetch_add(1, Ordering::Relaxed);
    }

    /// Records an event edge on the producer's stream.
    ///
    /// # Errors
    /// [`Error::WrongEdgeKind`], [`Error::WrongEndpoint`], [`Error::SlotOutOfRange`], a backend error.
    pub fn record(&self, edge: &Edge<B>, slot: usize, stream: &crate::Stream<B>) -> Result<()> {
        if edge.decl.kind != EdgeKind::Event {
            return Err(edge.wrong_kind("record"));
        }
        edge.check("producer", edge.decl.producer, Endpoint::Stream(stream.name()))?;
        let s = edge.slot(slot)?;
        let SlotSync::Event(ev) = &s.sync else { return Err(edge.wrong_kind("record")) };
        self.backend.record_event(ev, stream.raw())?;
        Self::signaled(edge, s, 0);
        Ok(())
    }

    /// Makes the consumer's stream wait for the latest record of an event edge.
    ///
    /// # Errors
    /// [`Error::WaitBeforeRecord`] when nothing recorded this slot yet;
    /// [`Error::WrongEdgeKind`], [`Error::WrongEndpoint`], [`Error::SlotOutOfRange`], a backend error.
    pub fn wait(&self, edge: &Edge<B>, slot: usize, stream: &crate::Stream<B>) -> Result<()> {
        if edge.decl.kind != EdgeKind::Event {
            return Err(edge.wrong_kind("wait"));
        }
        edge.check("consumer", edge.decl.consumer, Endpoint::Stream(stream.name()))?;
        let s = edge.slot(slot)?;
        let SlotSync::Event(ev) = &s.sync else { return Err(edge.wrong_kind("wait")) };
        if !s.signaled.load(Ordering::Acquire) {
            return Err(Error::WaitBeforeRecord { edge: edge.decl.name, slot });
        }
        s.waited.store(true, Ordering::Release);
        self.backend.stream_wait_event(stream.raw(), ev, &edge.meter)
    }

    /// Blocks a host thread in role `role` until the latest record of an event edge completes.
    ///
    /// # Errors
    /// As for [`EdgeTable::wait`].
    pub fn host_wait(&self, edge: &Edge<B>, slot: usize, role: &'static str) -> Result<()> {
        if edge.decl.kind != EdgeKind::Event {
            return Err(edge.wrong_kind("host_wait"));
        }
        edge.check("consumer", edge.decl.consumer, Endpoint::Host(role))?;
        let s = edge.slot(slot)?;
        let SlotSync::Event(ev) = &s.sync else { return Err(edge.wrong_kind("host_wait")) };
        if !s.signaled.load(Ordering::Acquire) {
            return Err(Error::WaitBeforeRecord { edge: edge.decl.name, slot });
        }
        s.waited.store(true, Ordering::Release);
        let start = std::time::Instant::now();
        self.backend.host_wait_event(ev)?;
        edge.meter.add(start.elapsed());
        Ok(())
    }

    /// Publishes `value` on a counter edge when the producer's stream reaches this point.
    ///
    /// # Errors
    /// [`Error::WrongEdgeKind`] (host rules are published from the host), [`Error::WrongEndpoint`],
    /// [`Error::SlotOutOfRange`], a backend error.
    pub fn publish(
        &self,
        edge: &Edge<B>,
        slot: usize,
        value: u64,
        stream: &crate::Stream<B>,
    ) -> Result<()> {
        if edge.decl.kind != EdgeKind::GenCounter {
            return Err(edge.wrong_kind("publish on a stream"));
        }
        edge.check("producer", edge.decl.producer, Endpoint::Stream(stream.name()))?;
        let s = edge.slot(slot)?;
        let SlotSync::Counter(c) = &s.sync else { return Err(edge.wrong_kind("publish")) };
        self.backend.publish_on_stream(c, value, stream.raw())?;
        Self::signaled(edge, s, value);
        Ok(())
    }

    /// Publishes `value` on a counter or host-rule edge from a host thread in role `role`, now.
    ///
    /// # Errors
    /// [`Error::CounterBackwards`], [`Error::WrongEdgeKind`], [`Error::WrongEndpoint`],
    /// [`Error::SlotOutOfRange`], a backend error.
    pub fn publish_host(
        &self,
        edge: &Edge<B>,
        slot: usize,
        value: u64,
        role: &'static str,
    ) -> Result<()> {
        edge.check("producer", edge.decl.producer, Endpoint::Host(role))?;
        self.publish_host_unchecked(edge, slot, value)
    }

    /// Publishes from the host without the producer check: teardown (`release_all`) and a
    /// host rule kept on a stream's behalf publish for an endpoint that is not a host role.
    pub(crate) fn publish_host_unchecked(
        &self,
        edge: &Edge<B>,
        slot: usize,
        value: u64,
    ) -> Result<()> {
        let s = edge.slot(slot)?;
        match &s.sync {
            SlotSync::Counter(c) => self.backend.publish_host(c, value)?,
            SlotSync::Host(c) => c.publish(value)?,
            SlotSync::Event(_) => return Err(edge.wrong_kind("publish_host")),
        }
        Self::signaled(edge, s, value);
        Ok(())
    }

    /// Makes the consumer's stream wait until a counter edge reaches `value`. The publish
    /// may come later (that is what counters are for); a value never published is reported
    /// at teardown.
    ///
    /// # Errors
    /// [`Error::WrongEdgeKind`], [`Error::WrongEndpoint`], [`Error::SlotOutOfRange`], a backend error.
    pub fn wait_value(
        &self,
        edge: &Edge<B>,
        slot: usize,
        value: u64,
        stream: &crate::Stream<B>,
    ) -> Result<()> {
        if edge.decl.kind != EdgeKind::GenCounter {
            return Err(edge.wrong_kind("wait_value on a stream"));
        }
        edge.check("consumer", edge.decl.consumer, Endpoint::Stream(stream.name()))?;
        let s = edge.slot(slot)?;
        let SlotSync::Counter(c) = &s.sync else { return Err(edge.wrong_kind("wait_value")) };
        s.waited.store(true, Ordering::Release);
        s.wanted.fetch_max(value, Ordering::AcqRel);
        self.backend.stream_wait_counter(stream.raw(), c, value, &edge.meter)
    }

    /// Blocks a host thread in role `role` until a counter or host-rule edge reaches `value`.
    ///
    /// # Errors
    /// [`Error::WrongEdgeKind`], [`Error::WrongEndpoint`], [`Error::SlotOutOfRange`], a backend error.
    pub fn host_wait_value(
        &self,
        edge: &Edge<B>,
        slot: usize,
        value: u64,
        role: &'static str,
    ) -> Result<()> {
        self.host_wait_value_as(edge, slot, value, Endpoint::Host(role))
    }

    /// [`EdgeTable::host_wait_value`] on behalf of `who`: a stream whose rule the host keeps
    /// (a host-rule edge consumed by a stream blocks the thread that enqueues the stream's work).
    pub(crate) fn host_wait_value_as(
        &self,
        edge: &Edge<B>,
        slot: usize,
        value: u64,
        who: Endpoint,
    ) -> Result<()> {
        edge.check("consumer", edge.decl.consumer, who)?;
        let s = edge.slot(slot)?;
        s.waited.store(true, Ordering::Release);
        s.wanted.fetch_max(value, Ordering::AcqRel);
        let start = std::time::Instant::now();
        match &s.sync {
            SlotSync::Counter(c) => self.backend.host_wait_counter(c, value)?,
            SlotSync::Host(c) => {
                c.wait(value);
            }
            SlotSync::Event(_) => return Err(edge.wrong_kind("host_wait_value")),
        }
        edge.meter.add(start.elapsed());
        Ok(())
    }

    /// The value of a counter or host-rule edge as the host sees it (0 for events).
    ///
    /// # Errors
    /// [`Error::SlotOutOfRange`].
    pub fn value(&self, edge: &Edge<B>, slot: usize) -> Result<u64> {
        Ok(match &edge.slot(slot)?.sync {
            SlotSync::Counter(c) => self.backend.counter_value(c),
            SlotSync::Host(c) => c.value(),
            SlotSync::Event(_) => 0,
        })
    }

    /// Per-edge statistics, in declaration order.
    pub fn stats(&self) -> Vec<EdgeStats> {
        lock(&self.edges)
            .iter()
            .map(|e| EdgeStats {
                name: e.decl.name,
                signals: e.signals.load(Ordering::Relaxed),
                waits: e.meter.waits(),
                stall: e.meter.stall(),
            })
            .collect()
    }

    /// The teardown check: edges recorded or published but never waited on, and counter
    /// waits for values never published. Call it once all streams are synchronized.
    pub fn teardown_findings(&self) -> Vec<TeardownFinding> {
        let mut out = Vec::new();
        for e in lock(&self.edges).iter() {
            for (slot, s) in e.slots.iter().enumerate() {
                let signaled = s.signaled.load(Ordering::Acquire);
                let waited = s.waited.load(Ordering::Acquire);
                if signaled && !waited {
                    out.push(TeardownFinding::DeadEdge { edge: e.decl.name, slot });
                }
                let wanted = s.wanted.load(Ordering::Acquire);
                let published = s.published.load(Ordering::Acquire);
                if e.decl.kind != EdgeKind::Event && wanted > published {
                    out.push(TeardownFinding::NeverPublished {
                        edge: e.decl.name,
                        slot,
                        wanted,
                        published,
                    });
                }
            }
        }
        out
    }
}
