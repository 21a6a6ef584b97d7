//! Wall-clock deadlines: a watchdog thread stops guests still running when
//! their run's deadline passes.
//!
//! Guests under a deadline are compiled with the metering middleware, which
//! checks the points left at every function start and loop iteration. Each
//! thread that runs guests has a [`Slot`]: the deadline of its current run
//! and where the running guest keeps its points. The watchdog wakes every
//! [`TICK`] while some run has a deadline and, for every run past it,
//! overwrites those points with [`STOPPED`]; the guest's next check then
//! traps, and the runtime reports the trap as a deadline because the clock
//! says so. Host functions that wait (`poll_oneoff`) or run the rest of the
//! chain (`next`) look at the deadline themselves.
//!
//! The guest's thread pays a clock reading and a few plain stores per run,
//! and one atomic exchange per call into a guest: no signals, no locks, no
//! system calls on the warm path.

use std::cell::Cell;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicPtr, AtomicU64, fence};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

/// What the watchdog writes into the points of a guest past its deadline:
/// less than any check asks for, and far enough from `i64::MIN` that the
/// guest's own subtractions cannot wrap it around.
pub(crate) const STOPPED: i64 = i64::MIN / 2;

/// How often the watchdog looks at the runs with a deadline, while there
/// are any: how late past its deadline a guest may be stopped, plus the
/// time to its next check.
pub(crate) const TICK: Duration = Duration::from_millis(1);

/// How long the watchdog keeps ticking with no run under a deadline before
/// it slows down to [`IDLE_TICK`], until a run starts and wakes it.
const IDLE_BEFORE_PARKING: Duration = Duration::from_secs(1);
/// How often an idle watchdog looks anyway: a run that starts while the
/// watchdog is going idle may miss waking it, and is then seen this late.
const IDLE_TICK: Duration = Duration::from_millis(100);

/// One thread's current run, as the watchdog sees it.
#[derive(Debug, Default)]
struct Slot {
    /// When the current run's deadline passes, in [`nanos`]; 0 when the
    /// thread runs nothing under a deadline.
    deadline: AtomicU64,
    /// Odd while `deadline` changes (a sequence lock, written by the slot's
    /// thread only): the watchdog acts only on a deadline and target it
    /// read within one even epoch.
    epoch: AtomicU64,
    /// The points of the guest running now (null when none).
    target: AtomicPtr<i64>,
    /// Set while the watchdog may write through `target`; the thread waits
    /// for it to clear before anything `target` pointed to may be freed.
    busy: AtomicBool,
}

/// The slots of every thread that ran guests under a deadline.
static SLOTS: Mutex<Vec<Weak<Slot>>> = Mutex::new(Vec::new());
/// The watchdog thread, started with the first slot.
static WATCHDOG: OnceLock<Option<std::thread::Thread>> = OnceLock::new();
/// Set while the watchdog is parked for lack of work.
static PARKED: AtomicBool = AtomicBool::new(false);

thread_local! {
    static SLOT: Arc<Slot> = register();
    /// The limit the current run's deadline came from, for errors.
    static LIMIT: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

/// Nanoseconds since the first deadline, plus one (so never 0).
fn nanos() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_nanos() as u64 + 1
}

fn register() -> Arc<Slot> {
    let slot = Arc::new(Slot::default());
    let mut slots = SLOTS.lock().unwrap_or_else(PoisonError::into_inner);
    slots.retain(|slot| slot.strong_count() > 0);
    slots.push(Arc::downgrade(&slot));
    drop(slots);
    WATCHDOG.get_or_init(|| match std::thread::Builder::new().name("scale-deadlines".into()).spawn(watch) {
        Ok(watchdog) => Some(watchdog.thread().clone()),
        Err(err) => {
            // Host waits and `next` still end at the deadline; guests that
            // spin are left to the CPU budget.
            tracing::error!(error = %err, "the deadline watchdog thread cannot start");
            None
        }
    });
    slot
}

/// The watchdog's loop.
fn watch() {
    let mut last_busy = Instant::now();
    loop {
        let slots: Vec<Arc<Slot>> =
            SLOTS.lock().unwrap_or_else(PoisonError::into_inner).iter().filter_map(Weak::upgrade).collect();
        let now = nanos();
        let mut active = false;
        for slot in &slots {
            let deadline = slot.deadline.load(Relaxed);
            if deadline != 0 {
                active = true;
                if now >= deadline {
                    stop(slot, deadline);
                }
            }
        }
        drop(slots);
        if active {
            last_busy = Instant::now();
        } else if last_busy.elapsed() >= IDLE_BEFORE_PARKING {
            // Runs that start from now on wake the watchdog; one starting
            // while this is set may not, and is seen after `IDLE_TICK`.
            PARKED.store(true, Relaxed);
            std::thread::park_timeout(IDLE_TICK);
            PARKED.store(false, Relaxed);
            continue;
        }
        std::thread::sleep(TICK);
    }
}

/// Stops the guest running in `slot`, if its run is still the one whose
/// `deadline` passed.
fn stop(slot: &Slot, deadline: u64) {
    slot.busy.store(true, SeqCst);
    let epoch = slot.epoch.load(Acquire);
    let same_deadline = slot.deadline.load(Relaxed) == deadline;
    let target = slot.target.load(SeqCst);
    fence(Acquire);
    let same_epoch = slot.epoch.load(Relaxed) == epoch;
    if epoch.is_multiple_of(2) && same_deadline && same_epoch && !target.is_null() {
        // SAFETY: `target` points to the points global of a guest that is
        // running on the slot's thread: the thread sets it before calling
        // the guest and, before the guest can be freed, replaces it and
        // waits for `busy` to clear (`Target::drop`, on return and on
        // unwinding alike; its store and our load of `target`, our store
        // and its load of `busy`, are sequentially consistent, so one of us
        // sees the other), so it is alive while `busy` is set. The global
        // is 8-byte aligned (wasmer aligns global definitions to 16 bytes).
        // The guest's code reads and writes it with plain loads and stores
        // on its own thread; an aligned 8-byte store is atomic on the
        // targets wasmer supports, so the guest reads either its own value
        // or this one. If the guest's own subtraction overwrites this
        // store, the next tick stores it again.
        unsafe { AtomicI64::from_ptr(target) }.store(STOPPED, Relaxed);
    }
    slot.busy.store(false, Release);
}

/// Waits until the watchdog is not writing through the slot's target.
fn wait_not_busy(slot: &Slot) {
    while slot.busy.load(SeqCst) {
        std::hint::spin_loop();
    }
}

/// Changes the slot's run: `change` runs with the epoch odd.
fn change_run(slot: &Slot, change: impl FnOnce()) {
    // Only this thread writes the epoch.
    let epoch = slot.epoch.load(Relaxed);
    slot.epoch.store(epoch + 1, Relaxed);
    fence(Release);
    change();
    slot.epoch.store(epoch + 2, Release);
}

/// A run under a deadline on this thread; dropping it ends the run and
/// gives the thread back to the run it was nested in, if any.
#[derive(Debug)]
pub(crate) struct Run {
    saved_deadline: u64,
    saved_target: *mut i64,
    saved_limit: Duration,
}

/// Starts a run on this thread that must end within `limit`. A run nested
/// in another (a native handler running an instance, a replacement
/// instance made during a run) ends by the outer run's deadline too.
pub(crate) fn begin(limit: Duration) -> Run {
    let deadline = nanos().saturating_add(u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX)).max(1);
    SLOT.with(|slot| {
        let saved_deadline = slot.deadline.load(Relaxed);
        let saved_limit = LIMIT.get();
        let (deadline, limit) = match saved_deadline {
            0 => (deadline, limit),
            saved if saved <= deadline => (saved, saved_limit),
            _ => (deadline, limit),
        };
        LIMIT.set(limit);
        // The target goes back to none: whatever it held belongs to an
        // outer run, still alive, until this one ends.
        let saved_target = slot.target.load(Relaxed);
        change_run(slot, || {
            slot.deadline.store(deadline, Relaxed);
            slot.target.store(std::ptr::null_mut(), Relaxed);
        });
        if PARKED.load(Relaxed)
            && let Some(Some(watchdog)) = WATCHDOG.get()
        {
            watchdog.unpark();
        }
        Run { saved_deadline, saved_target, saved_limit }
    })
}

impl Drop for Run {
    fn drop(&mut self) {
        LIMIT.set(self.saved_limit);
        // Every `Target` of this run has dropped: the target is none again,
        // and what comes back belongs to the outer run.
        SLOT.with(|slot| {
            change_run(slot, || {
                slot.deadline.store(self.saved_deadline, Relaxed);
                slot.target.store(self.saved_target, Relaxed);
            });
        });
    }
}

/// A guest's points made what the watchdog stops while the guest runs on
/// this thread; dropping it (when the call returns or unwinds) puts back
/// what it replaced, and waits until the watchdog no longer writes through
/// the pointer it held.
#[derive(Debug)]
pub(crate) struct Target {
    previous: *mut i64,
}

impl Target {
    pub(crate) fn set(points: *mut i64) -> Self {
        // Only this thread writes the target; what it replaces stays alive
        // (an outer guest, suspended) until this one is dropped.
        let previous = SLOT.with(|slot| {
            let previous = slot.target.load(Relaxed);
            slot.target.store(points, Release);
            previous
        });
        Self { previous }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        SLOT.with(|slot| {
            slot.target.store(self.previous, SeqCst);
            wait_not_busy(slot);
        });
    }
}

/// The limit of this thread's current run, if it has passed its deadline.
pub(crate) fn passed_limit() -> Option<Duration> {
    passed().then(|| LIMIT.get())
}

/// Whether this thread's current run has passed its deadline.
pub(crate) fn passed() -> bool {
    SLOT.with(|slot| {
        let deadline = slot.deadline.load(Relaxed);
        deadline != 0 && nanos() >= deadline
    })
}

/// How long until this thread's current run passes its deadline: `None`
/// without one, zero once it has passed.
pub(crate) fn time_left() -> Option<Duration> {
    SLOT.with(|slot| {
        let deadline = slot.deadline.load(Relaxed);
        (deadline != 0).then(|| Duration::from_nanos(deadline.saturating_sub(nanos())))
    })
}
