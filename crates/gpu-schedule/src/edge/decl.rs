//! What an edge is declared as: its endpoints and how it carries its ordering (a leaf
//! module, so that errors can name edge kinds without importing the edge table).

use std::fmt;

/// Who is at one end of an edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A stream, by the name it was created with.
    Stream(&'static str),
    /// A host thread (or group of threads) in a named role, e.g. `"io-worker"`.
    Host(&'static str),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stream(s) => write!(f, "stream {s:?}"),
            Self::Host(h) => write!(f, "host role {h:?}"),
        }
    }
}

/// How an edge carries its ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EdgeKind {
    /// A device event: the producer records, the consumer waits for the latest record.
    Event,
    /// A monotonic generation counter: the producer publishes a value, the consumer waits
    /// for a value. Unlike an event, a wait may be enqueued before the publish it needs.
    GenCounter,
    /// A rule kept by the host: a host counter that host threads publish and wait on,
    /// for dependencies the device cannot express.
    HostRule,
}

/// The declaration of one edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeDecl {
    /// Unique name, shown in errors and stats.
    pub name: &'static str,
    /// The side that records or publishes.
    pub producer: Endpoint,
    /// The side that waits.
    pub consumer: Endpoint,
    /// What the edge protects, in words (e.g. `"staging slot bytes"`).
    pub guards: &'static str,
    /// How the ordering is carried.
    pub kind: EdgeKind,
    /// One instance per slot (true) or a single instance (false, slot must be 0).
    pub per_slot: bool,
}
