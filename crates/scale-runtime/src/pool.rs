//! The pool of one function: idle guest instances kept per thread and
//! shared, the generation that `clear()` moves on, and the counters behind
//! [`PoolStats`].
//!
//! A thread that runs a function again and again takes its guest from its
//! own slot and puts it back there; the shared pool holds the rest of the
//! idle guests, up to the runtime's `max_idle`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::Error;
use crate::guest::{Compiled, Guest};
use crate::signature::Signature;

/// Counters of one function's pool.
#[derive(Debug, Default)]
struct Counters {
    created: AtomicU64,
    reused: AtomicU64,
    discarded: AtomicU64,
}

/// What a function's pool has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Instances made (each one a full instantiation of the module).
    pub created: u64,
    /// Times an idle instance was handed out again.
    pub reused: u64,
    /// Instances dropped instead of kept: after a trap or malformed output,
    /// after `max_uses`, past the memory high-water mark, after `clear()`,
    /// or because the pool was full.
    pub discarded: u64,
    /// Instances idle in the pool now.
    pub idle: u64,
}

impl std::ops::Add for PoolStats {
    type Output = PoolStats;

    fn add(self, other: PoolStats) -> PoolStats {
        PoolStats {
            created: self.created + other.created,
            reused: self.reused + other.reused,
            discarded: self.discarded + other.discarded,
            idle: self.idle + other.idle,
        }
    }
}

/// One function of a runtime: its compiled module and its pool of idle
/// guests.
pub(crate) struct LoadedFunction<S: Signature> {
    compiled: Compiled<S>,
    /// Idle guests kept per thread slot, tried before `pool`: at most one each.
    slots: Box<[ThreadSlot<S>]>,
    /// The shared idle guests, beyond the slots'.
    pool: object_pool::Pool<Box<Guest<S>>>,
    /// How many guests `pool` holds, kept beside it so that taking a guest
    /// back is one lock, not two.
    pool_len: AtomicUsize,
    /// How many guests `pool` may hold: `max_idle` less the slots.
    pool_capacity: usize,
    /// Bumped by `clear()`: instances of an older generation are not kept.
    generation: AtomicU64,
    stats: Counters,
}

impl<S: Signature> std::ops::Deref for LoadedFunction<S> {
    type Target = Compiled<S>;

    fn deref(&self) -> &Compiled<S> {
        &self.compiled
    }
}

/// One idle guest kept for the threads that map to this slot (usually a
/// single thread), alone on its cache lines. A thread that runs a function
/// again and again takes its guest from its slot and puts it back there,
/// touching nothing that other threads touch: no shared lock, counter or
/// cache line moves between cores on the hot path.
#[repr(align(128))]
struct ThreadSlot<S: Signature> {
    idle: Mutex<Option<Box<Guest<S>>>>,
    /// Guests handed out again from this slot.
    reused: AtomicU64,
}

impl<S: Signature> ThreadSlot<S> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Box<Guest<S>>>> {
        // A panic cannot leave the `Option` half-written: use it as it is.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A reference to one function for the instances of the threads that map
/// to it (usually a single thread), alone on its cache lines: a share in
/// the function's reference count. An instance holds each function through
/// its thread's reference, not through the function's own `Arc`: taking and
/// dropping instances then counts on memory that no other thread writes,
/// while the function itself is only read on the hot path. The runtime
/// holds every reference; the function is freed when the runtime and the
/// last instance have dropped.
#[repr(align(128))]
pub(crate) struct FunctionRef<S: Signature> {
    function: Arc<LoadedFunction<S>>,
}

impl<S: Signature> std::ops::Deref for FunctionRef<S> {
    type Target = LoadedFunction<S>;

    fn deref(&self) -> &LoadedFunction<S> {
        &self.function
    }
}

/// How many thread slots a function has (references, and idle slots at
/// most):
/// one per CPU, at most 16.
fn slot_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(16)
}

/// This thread's number, for picking a slot: threads are numbered in the
/// order they first ask.
fn thread_number() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static NUMBER: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    NUMBER.with(|number| *number)
}

impl<S: Signature> LoadedFunction<S> {
    /// The slot of the calling thread, if the function has slots.
    fn slot(&self) -> Option<&ThreadSlot<S>> {
        match self.slots.len() {
            0 => None,
            n => Some(&self.slots[thread_number() % n]),
        }
    }

    /// An idle instance, or a new one.
    pub fn checkout(&self) -> Result<Box<Guest<S>>, Error> {
        let generation = self.generation.load(Ordering::Acquire);
        let current = |guest: Box<Guest<S>>| {
            if guest.generation == generation {
                return Some(guest);
            }
            self.stats.discarded.fetch_add(1, Ordering::Relaxed);
            None
        };
        // This thread's slot first: the hot path.
        if let Some(slot) = self.slot() {
            let taken = slot.lock().take();
            if let Some(guest) = taken.and_then(current) {
                slot.reused.fetch_add(1, Ordering::Relaxed);
                return Ok(guest);
            }
        }
        while let Some(guest) = self.pull() {
            if let Some(guest) = current(guest) {
                self.stats.reused.fetch_add(1, Ordering::Relaxed);
                return Ok(guest);
            }
        }
        // Before making a new instance, one idle in another thread's slot
        // (a thread that has stopped running this function, say).
        for slot in self.slots.iter() {
            let taken = match slot.idle.try_lock() {
                Ok(mut idle) => idle.take(),
                Err(_) => None,
            };
            if let Some(guest) = taken.and_then(current) {
                self.stats.reused.fetch_add(1, Ordering::Relaxed);
                return Ok(guest);
            }
        }
        let guest = Box::new(Guest::instantiate(self, generation)?);
        self.stats.created.fetch_add(1, Ordering::Relaxed);
        Ok(guest)
    }

    fn pull(&self) -> Option<Box<Guest<S>>> {
        let (_, guest) = self.pool.try_pull()?.detach();
        self.pool_len.fetch_sub(1, Ordering::Relaxed);
        Some(guest)
    }

    /// Takes an instance back: kept idle if it is healthy, else dropped.
    pub fn checkin(&self, mut guest: Box<Guest<S>>, poisoned: bool) {
        let healthy = !poisoned
            && guest.generation == self.generation.load(Ordering::Acquire)
            && guest.uses < self.limits.max_uses
            && guest.memory_bytes() <= self.limits.memory_high_water;
        if !healthy {
            self.stats.discarded.fetch_add(1, Ordering::Relaxed);
            return;
        }
        guest.next = None;
        guest.result_context.reset();
        if let Some(context) = &mut guest.parked_context {
            context.reset();
        }
        if let Some(slot) = self.slot() {
            let mut idle = slot.lock();
            if idle.is_none() {
                *idle = Some(guest);
                return;
            }
        }
        self.park_shared(guest);
    }

    /// Keeps a healthy, reset guest in the shared pool or, when that is
    /// full, in any empty slot; drops it when there is no room left.
    fn park_shared(&self, guest: Box<Guest<S>>) {
        // Reserve a place first, so that racing check-ins cannot overfill the pool.
        if self.pool_len.fetch_add(1, Ordering::Relaxed) < self.pool_capacity {
            self.pool.attach(guest);
            return;
        }
        self.pool_len.fetch_sub(1, Ordering::Relaxed);
        for slot in self.slots.iter() {
            if let Ok(mut idle) = slot.idle.try_lock()
                && idle.is_none()
            {
                *idle = Some(guest);
                return;
            }
        }
        self.stats.discarded.fetch_add(1, Ordering::Relaxed);
    }

    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        for slot in &self.slots {
            let taken = slot.lock().take();
            if let Some(guest) = taken {
                drop(guest);
                self.stats.discarded.fetch_add(1, Ordering::Relaxed);
            }
        }
        while let Some(guest) = self.pull() {
            drop(guest);
            self.stats.discarded.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn stats(&self) -> PoolStats {
        let in_slots = self.slots.iter().filter(|slot| slot.lock().is_some()).count();
        let reused_from_slots: u64 = self.slots.iter().map(|slot| slot.reused.load(Ordering::Relaxed)).sum();
        PoolStats {
            created: self.stats.created.load(Ordering::Relaxed),
            reused: self.stats.reused.load(Ordering::Relaxed) + reused_from_slots,
            discarded: self.stats.discarded.load(Ordering::Relaxed),
            idle: (self.pool.len() + in_slots) as u64,
        }
    }
}

/// One function of a runtime, with the references its instances hold it by
/// (one per thread slot).
pub(crate) struct PooledFunction<S: Signature> {
    function: Arc<LoadedFunction<S>>,
    refs: Box<[Arc<FunctionRef<S>>]>,
}

impl<S: Signature> std::ops::Deref for PooledFunction<S> {
    type Target = LoadedFunction<S>;

    fn deref(&self) -> &LoadedFunction<S> {
        &self.function
    }
}

impl<S: Signature> PooledFunction<S> {
    /// A pool for `compiled`, keeping at most `max_idle` idle guests, with
    /// one guest made now: that reports instantiation problems at load time
    /// and leaves a warm guest in the pool.
    pub fn new(compiled: Compiled<S>, max_idle: usize) -> Result<Self, Error> {
        // One reference per thread slot; as many idle slots, but never more
        // than the idle guests allowed.
        let refs = slot_count();
        let slots = refs.min(max_idle);
        let function = Arc::new(LoadedFunction {
            compiled,
            slots: (0..slots).map(|_| ThreadSlot { idle: Mutex::new(None), reused: AtomicU64::new(0) }).collect(),
            pool: object_pool::Pool::from_vec(Vec::new()),
            pool_len: AtomicUsize::new(0),
            pool_capacity: max_idle - slots,
            generation: AtomicU64::new(0),
            stats: Counters::default(),
        });
        let guest = Box::new(Guest::instantiate(&function, 0)?);
        function.stats.created.fetch_add(1, Ordering::Relaxed);
        // Shared, not in this thread's slot: the first run may come from
        // any thread.
        function.park_shared(guest);
        let refs = (0..refs).map(|_| Arc::new(FunctionRef { function: Arc::clone(&function) })).collect();
        Ok(Self { function, refs })
    }

    /// The calling thread's reference to the function.
    pub fn for_this_thread(&self) -> &Arc<FunctionRef<S>> {
        &self.refs[thread_number() % self.refs.len()]
    }

    /// A weak reference to the function, which lives as long as the
    /// runtime or an instance holds it.
    #[cfg(test)]
    pub fn downgrade(&self) -> std::sync::Weak<LoadedFunction<S>> {
        Arc::downgrade(&self.function)
    }
}
