//! A guest's CPU budget at run time: where its points are and how the host
//! charges them. The compile-time side, which makes guests count, is
//! [`crate::metering`].

use std::ptr::NonNull;
use std::sync::atomic::{AtomicI64, Ordering};

use wasmer::{AsStoreMut, Global, Store, Value};

use crate::deadline;
use crate::metering;

/// A guest's CPU budget: where its metering keeps the points left, and
/// the global it notes why it stopped in.
#[derive(Clone)]
pub(crate) struct Meter {
    points: Points,
    exhausted: Global,
}

/// The address of a guest's points (the metering global `remaining`).
#[derive(Clone, Copy)]
struct Points(NonNull<i64>);

// SAFETY: the address points into the instance of the guest whose store
// holds this value (in its host state) or that owns it; it is used only
// through `Meter`, by the thread running that guest, while the store is
// alive. Moving it to another thread with the guest's store changes nothing.
unsafe impl Send for Points {}

impl Meter {
    /// The meter of a freshly made instance whose metering globals are
    /// `remaining` and `exhausted`. `None` when the value of `remaining`
    /// cannot be located among the store's globals.
    pub fn locate(store: &mut Store, remaining: &Global, exhausted: Global) -> Option<Self> {
        Some(Self { points: Points(points_address(store, remaining)?), exhausted })
    }

    /// The points, as an atomic: the deadline watchdog stores to them from
    /// another thread.
    fn cell(&self) -> &AtomicI64 {
        // SAFETY: `points` is the 8-byte aligned value of an i64 global of
        // a live instance (see `Points`); every access from Rust is atomic
        // (this one and the watchdog's), and the guest's own code, which
        // reads and writes it with plain aligned loads and stores, does not
        // run while the host is in here for it on this thread.
        unsafe { AtomicI64::from_ptr(self.points.0.as_ptr()) }
    }

    /// Where the points live, for the deadline watchdog.
    pub fn address(&self) -> NonNull<i64> {
        self.points.0
    }

    /// The points left.
    pub fn get(&self) -> i64 {
        self.cell().load(Ordering::Relaxed)
    }

    pub fn set(&self, points: i64) {
        self.cell().store(points, Ordering::Relaxed);
    }

    /// What the guest's metering noted this run: `OUT_OF_POINTS`,
    /// `TABLE_REFUSED` or 0.
    pub fn noted(&self, store: &mut impl AsStoreMut) -> i32 {
        self.exhausted.get(store).i32().unwrap_or(0)
    }

    /// Forgets what the guest's metering noted, before a call into it.
    pub fn clear_noted(&self, store: &mut impl AsStoreMut) {
        // The global is a mutable i32 the middleware added: setting it
        // cannot fail.
        let _ = self.exhausted.set(store, Value::I32(0));
    }

    /// Whether the guest has no points left or its run is past the
    /// deadline (the watchdog takes the points then); a host function
    /// seeing it stops the guest with `HostTrap::OutOfTime`. The trap is
    /// classified by the points and the clock.
    pub fn out_of_time(&self) -> bool {
        self.get() < 0 || deadline::passed()
    }

    /// Notes that the guest is out of points, for a trap raised by the host.
    pub fn note_out_of_points(&self, store: &mut impl AsStoreMut) {
        // As in `clear_noted`: setting it cannot fail.
        let _ = self.exhausted.set(store, Value::I32(metering::OUT_OF_POINTS));
    }
}

/// Charges a guest's budget for host work done on its behalf: `points`
/// (bytes moved, nanoseconds slept). The guest's next check traps when too
/// few are left; past the run's deadline, none are.
pub(crate) fn charge(meter: Option<&Meter>, points: u64) {
    let Some(meter) = meter else { return };
    let left = if deadline::passed() {
        deadline::STOPPED
    } else {
        meter.get().saturating_sub(i64::try_from(points).unwrap_or(i64::MAX)).max(deadline::STOPPED)
    };
    meter.set(left);
}

/// Where the metering global `remaining` keeps its value, found by giving
/// it a random value and looking for that value among the store's globals.
/// `None` when it is not found exactly once.
fn points_address(store: &mut Store, remaining: &Global) -> Option<NonNull<i64>> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).ok()?;
    let marker = i64::from_le_bytes(bytes) | 1;
    remaining.set(store, Value::I64(marker)).ok()?;
    let mut found = None;
    for global in store.objects_mut().as_sys_mut().iter_globals() {
        if global.ty().ty != wasmer::Type::I64 {
            continue;
        }
        let definition = global.vmglobal();
        // SAFETY: every global of the store has a live definition, and an
        // i64 global's value is its first 8 bytes; no guest code runs now.
        let value = unsafe { definition.as_ref().val.i64 };
        if value == marker {
            if found.is_some() {
                return None;
            }
            found = Some(definition.cast::<i64>());
        }
    }
    found
}
