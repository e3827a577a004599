//! Generation-carried pools: every buffer that cycles lives in a slot whose acquire waits
//! for the previous generation's release, so no stage sees a cycled buffer without its ordering.

use std::fmt;

use crate::backend::Backend;
use crate::edge::{Edge, EdgeDecl, EdgeKind, EdgeTable, Endpoint};
use crate::error::{Error, Result};
use crate::sync::{Arc, Mutex, lock};
#[cfg(test)]
use crate::sync::{AtomicBool, Ordering};

/// Who acquires and who releases a pool's slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSpec {
    /// The pool's name; its ordering edge is declared under the same name.
    pub name: &'static str,
    /// The endpoint that acquires (waits for the previous generation's release).
    pub acquirer: Endpoint,
    /// The endpoint that releases.
    pub releaser: Endpoint,
}

/// A pool of `N` buffers, each with a generation.
///
/// Generation `g` of a slot is its `g`-th acquire (from 0). Releasing generation `g`
/// publishes `g + 1`; acquiring generation `g` waits until `g` has been published, i.e.
/// until generation `g - 1` was released.
pub struct Pool<B: Backend, T> {
    inner: Arc<PoolInner<B, T>>,
}

impl<B: Backend, T> Clone for Pool<B, T> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

struct PoolInner<B: Backend, T> {
    spec: PoolSpec,
    table: Arc<EdgeTable<B>>,
    edge: Arc<Edge<B>>,
    buffers: Vec<T>,
    gens: Mutex<Vec<SlotGen>>,
    /// The mutation switch: when set, acquire skips its wait. Only tests can set it; it
    /// exists to prove that the toy pipeline's correctness comes from this wait.
    #[cfg(test)]
    skip_wait: AtomicBool,
}

#[derive(Debug, Clone, Copy, Default)]
struct SlotGen {
    acquired: u64,
    released: u64,
}

impl<B: Backend, T> fmt::Debug for Pool<B, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("spec", &self.inner.spec)
            .field("kind", &self.inner.edge.decl().kind)
            .field("slots", &self.inner.buffers.len())
            .finish()
    }
}

/// One acquired generation of one slot. Hand it to [`Pool::release`] (or [`Pool::release_host`]);
/// a lease dropped unreleased keeps its slot until [`Pool::release_all`].
#[must_use = "a lease must be released, or its slot is blocked until release_all"]
pub struct Lease<B: Backend, T> {
    pool: Arc<PoolInner<B, T>>,
    slot: usize,
    generation: u64,
}

impl<B: Backend, T> fmt::Debug for Lease<B, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("pool", &self.pool.spec.name)
            .field("slot", &self.slot)
            .field("generation", &self.generation)
            .finish()
    }
}

impl<B: Backend, T> Lease<B, T> {
    /// The slot.
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// The generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The slot's buffer. Work that touches it must be ordered after the acquire (same
    /// stream, or through an edge).
    pub fn buffer(&self) -> &T {
        &self.pool.buffers[self.slot]
    }
}

impl<B: Backend, T> Pool<B, T> {
    /// Creates a pool over `buffers` (one slot each) and declares its ordering edge in `table`.
    /// The edge is a generation counter where the backend has device counters, a host rule
    /// when both ends are host roles, and otherwise an event (stream releaser) or a host
    /// rule (host releaser, stream acquirer: the acquiring thread then blocks).
    ///
    /// # Errors
    /// [`Error::NoSlots`] for no buffers; [`Error::DuplicateName`]; a backend error.
    pub fn new(table: &Arc<EdgeTable<B>>, spec: PoolSpec, buffers: Vec<T>) -> Result<Self> {
        if buffers.is_empty() {
            return Err(Error::NoSlots { name: spec.name });
        }
        let host_only =
            matches!((spec.acquirer, spec.releaser), (Endpoint::Host(_), Endpoint::Host(_)));
        let kind = if host_only {
            EdgeKind::HostRule
        } else if table.backend().device_counters() {
            EdgeKind::GenCounter
        } else if matches!(spec.releaser, Endpoint::Stream(_)) {
            EdgeKind::Event
        } else {
            EdgeKind::HostRule
        };
        let decl = EdgeDecl {
            name: spec.name,
            producer: spec.releaser,
            consumer: spec.acquirer,
            guards: "pool slot buffers",
            kind,
            per_slot: true,
        };
        let edge = table.declare_slots(decl, buffers.len())?;
        let gens = Mutex::new(vec![SlotGen::default(); buffers.len()]);
        Ok(Self {
            inner: Arc::new(PoolInner {
                spec,
                table: Arc::clone(table),
                edge,
                buffers,
                gens,
                #[cfg(test)]
                skip_wait: AtomicBool::new(false),
            }),
        })
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.inner.buffers.len()
    }

    /// The pool's name.
    pub fn name(&self) -> &'static str {
        self.inner.spec.name
    }

    /// The kind of edge that carries this pool's ordering.
    pub fn kind(&self) -> EdgeKind {
        self.inner.edge.decl().kind
    }

    /// The number of releases of `slot` submitted so far (its next acquire's generation
    /// minus outstanding leases).
    ///
    /// # Errors
    /// [`Error::SlotOutOfRange`].
    pub fn released(&self, slot: usize) -> Result<u64> {
        self.check_slot(slot)?;
        Ok(lock(&self.inner.gens)[slot].released)
    }

    /// Test-only mutation switch: acquire no longer waits for the previous generation's release.
    #[cfg(test)]
    pub(crate) fn set_skip_acquire_wait(&self, skip: bool) {
        self.inner.skip_wait.store(skip, Ordering::SeqCst);
    }

    fn skip_wait(&self) -> bool {
        #[cfg(test)]
        {
            self.inner.skip_wait.load(Ordering::SeqCst)
        }
        #[cfg(not(test))]
        {
            false
        }
    }

    fn check_slot(&self, slot: usize) -> Result<()> {
        if slot < self.inner.buffers.len() {
            Ok(())
        } else {
            Err(Error::SlotOutOfRange {
                what: "pool",
                name: self.inner.spec.name,
                slot,
                slots: self.inner.buffers.len(),
            })
        }
    }

    fn lease(&self, slot: usize, generation: u64) -> Lease<B, T> {
        Lease { pool: Arc::clone(&self.inner), slot, generation }
    }

    /// Acquires the next generation of `slot` for work on `stream`: enqueues on `stream` a
    /// wait for the previous generation's release, then hands out the buffer.
    ///
    /// # Errors
    /// [`Error::SlotOutOfRange`]; [`Error::WrongEndpoint`] when `stream` is not the declared
    /// acquirer; [`Error::AcquireBeforeRelease`] for an event-ordered pool whose previous
    /// release was not submitted yet; a backend error.
    pub fn acquire(&self, slot: usize, stream: &crate::Stream<B>) -> Result<Lease<B, T>> {
        self.check_slot(slot)?;
        let inner = &*self.inner;
        let me = Endpoint::Stream(stream.name());
        if inner.spec.acquirer != me {
            return Err(Error::WrongEndpoint {
                edge: inner.spec.name,
                role: "consumer",
                declared: inner.spec.acquirer.to_string(),
                actual: me.to_string(),
            });
        }
        // The generation is taken first and the wait runs outside the lock: for a host rule
        // the wait blocks this thread until the releaser publishes.
        let generation = self.next_generation(slot)?;
        if generation > 0 && !self.skip_wait() {
            match inner.edge.decl().kind {
                EdgeKind::GenCounter => {
                    inner.table.wait_value(&inner.edge, slot, generation, stream)?
                }
                EdgeKind::Event => inner.table.wait(&inner.edge, slot, stream)?,
                EdgeKind::HostRule => {
                    inner.table.host_wait_value_as(&inner.edge, slot, generation, me)?
                }
            }
        }
        Ok(self.lease(slot, generation))
    }

    /// Takes the next generation of `slot` (the wait for its predecessor's release is the
    /// caller's, outside the lock). An event-ordered pool refuses to run ahead of the last
    /// release, since an event only remembers its latest record.
    fn next_generation(&self, slot: usize) -> Result<u64> {
        let inner = &*self.inner;
        let mut gens = lock(&inner.gens);
        let g = gens[slot];
        if inner.edge.decl().kind == EdgeKind::Event && g.acquired > g.released {
            return Err(Error::AcquireBeforeRelease {
                pool: inner.spec.name,
                slot,
                generation: g.acquired,
            });
        }
        gens[slot].acquired += 1;
        Ok(g.acquired)
    }

    /// Acquires the next generation of `slot` for a host thread in role `role`, blocking
    /// until the previous generation's release has completed.
    ///
    /// # Errors
    /// As for [`Pool::acquire`].
    pub fn acquire_blocking(&self, slot: usize, role: &'static str) -> Result<Lease<B, T>> {
        self.check_slot(slot)?;
        let inner = &*self.inner;
        let generation = self.next_generation(slot)?;
        if generation > 0 && !self.skip_wait() {
            match inner.edge.decl().kind {
                EdgeKind::Event => inner.table.host_wait(&inner.edge, slot, role)?,
                EdgeKind::GenCounter | EdgeKind::HostRule => {
                    inner.table.host_wait_value(&inner.edge, slot, generation, role)?;
                }
            }
        }
        Ok(self.lease(slot, generation))
    }

    /// Refuses a release of any but the oldest unreleased generation of its slot.
    fn check_order(&self, gens: &[SlotGen], lease: &Lease<B, T>) -> Result<()> {
        let expected = gens[lease.slot].released;
        if lease.generation != expected {
            return Err(Error::ReleaseOutOfOrder {
                pool: self.inner.spec.name,
                slot: lease.slot,
                generation: lease.generation,
                expected,
            });
        }
        Ok(())
    }

    fn take_release(&self, lease: &Lease<B, T>) -> Result<()> {
        if !Arc::ptr_eq(&lease.pool, &self.inner) {
            return Err(Error::ForeignLease {
                pool: self.inner.spec.name,
                lease_pool: lease.pool.spec.name,
            });
        }
        Ok(())
    }

    /// Releases a lease when `stream` reaches this point: the slot's next acquire waits for it.
    ///
    /// # Errors
    /// [`Error::ForeignLease`]; [`Error::ReleaseOutOfOrder`] when an older generation of the
    /// slot is still unreleased; [`Error::WrongEndpoint`]; a backend error.
    pub fn release(&self, lease: Lease<B, T>, stream: &crate::Stream<B>) -> Result<()> {
        self.take_release(&lease)?;
        let inner = &*self.inner;
        let slot = lease.slot;
        if inner.edge.decl().kind == EdgeKind::HostRule {
            // A host rule released "on" a stream: the host publishes once the stream has
            // reached this point, which it learns by synchronizing (outside the lock).
            let me = Endpoint::Stream(stream.name());
            if inner.spec.releaser != me {
                return Err(Error::WrongEndpoint {
                    edge: inner.spec.name,
                    role: "producer",
                    declared: inner.spec.releaser.to_string(),
                    actual: me.to_string(),
                });
            }
            inner.table.backend().synchronize(stream.raw())?;
        }
        // The lock is held across the enqueue (not a blocking call) so that two releases of
        // one slot reach the stream in generation order.
        let mut gens = lock(&inner.gens);
        self.check_order(&gens, &lease)?;
        match inner.edge.decl().kind {
            EdgeKind::GenCounter => {
                inner.table.publish(&inner.edge, slot, lease.generation + 1, stream)?
            }
            EdgeKind::Event => inner.table.record(&inner.edge, slot, stream)?,
            EdgeKind::HostRule => {
                inner.table.publish_host_unchecked(&inner.edge, slot, lease.generation + 1)?
            }
        }
        gens[slot].released += 1;
        Ok(())
    }

    /// Releases a lease from a host thread in role `role`, now.
    ///
    /// # Errors
    /// As for [`Pool::release`]; [`Error::WrongEdgeKind`] for an event-ordered pool (events
    /// are recorded on streams).
    pub fn release_host(&self, lease: Lease<B, T>, role: &'static str) -> Result<()> {
        self.take_release(&lease)?;
        let inner = &*self.inner;
        let slot = lease.slot;
        let mut gens = lock(&inner.gens);
        self.check_order(&gens, &lease)?;
        inner.table.publish_host(&inner.edge, slot, lease.generation + 1, role)?;
        gens[slot].released += 1;
        Ok(())
    }

    /// Teardown: marks every outstanding generation released and publishes the final
    /// values from the host, so that nothing waits on this pool forever. Call it only after
    /// every stream and worker that could still release has been synchronized and joined
    /// (the scheduler's teardown does this), or a late stream publish would go backwards.
    ///
    /// # Errors
    /// A backend error.
    pub fn release_all(&self) -> Result<()> {
        let inner = &*self.inner;
        let mut gens = lock(&inner.gens);
        for (slot, g) in gens.iter_mut().enumerate() {
            if g.acquired > g.released {
                if inner.edge.decl().kind != EdgeKind::Event {
                    inner.table.publish_host_unchecked(&inner.edge, slot, g.acquired)?;
                }
                g.released = g.acquired;
            }
        }
        Ok(())
    }
}
