//! The runs [`Dispatch::Auto`](crate::Dispatch::Auto) makes on tokio's
//! workers, and the watch that keeps a worker polling sockets while they
//! last.
//!
//! A tokio worker that runs a guest inline does nothing else until the run
//! returns. Leaving another worker free of runs is not enough on its own: a
//! worker with nothing to do sleeps, and sockets, timers and signals are
//! only polled by a worker that goes to sleep on them. If the free worker
//! fell asleep while the busy one was the one polling, nobody polls until
//! the run ends, and every other connection waits for it. So each inline
//! run notes when it started, and a thread of the process's own looks every
//! [`TICK`]: a run older than [`LONG_RUN`] gets one empty task spawned onto
//! its runtime from outside, which wakes an idle worker; that worker runs
//! it, finds nothing else, and goes to sleep polling the sockets, since the
//! busy worker is not. The watch thread sleeps itself once no inline run has
//! been seen for [`IDLE_AFTER`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How often the watch looks at the runs going inline.
pub(crate) const TICK: Duration = Duration::from_millis(1);

/// How long a run may go on inline before an idle worker is woken.
pub(crate) const LONG_RUN: Duration = Duration::from_millis(1);

/// How long the watch goes on looking after the last inline run it saw.
pub(crate) const IDLE_AFTER: Duration = Duration::from_secs(1);

/// The runs a service has going inline: one slot per run it allows, one
/// fewer than tokio has workers (at least one).
#[derive(Debug, Default)]
pub(crate) struct InlineRuns {
    slots: OnceLock<Slots>,
}

#[derive(Debug)]
struct Slots {
    slots: Box<[Slot]>,
    /// The runtime the runs are on, for waking one of its workers; `None`
    /// outside a multi-thread runtime, where there is no other worker.
    tokio: Option<tokio::runtime::Handle>,
}

#[derive(Debug, Default)]
struct Slot {
    /// When the run in this slot started (nanoseconds since the watch's
    /// epoch, plus one), or 0 when the slot is free.
    started: AtomicU64,
    /// The `started` of the last run the watch woke a worker for, so that
    /// a run wakes one once. Only the watch thread uses it.
    woken: AtomicU64,
}

impl InlineRuns {
    /// A place for one more inline run, if there is one.
    pub(crate) fn enter(self: &Arc<Self>) -> Option<InlineRun<'_>> {
        let slots = self.slots.get_or_init(|| self.start_watching());
        let watch = watch();
        let started = watch.now();
        let slot = slots
            .slots
            .iter()
            .find(|slot| slot.started.compare_exchange(0, started, Ordering::SeqCst, Ordering::Relaxed).is_ok())?;
        watch.wake_if_asleep();
        Some(InlineRun { slot: Some(slot) })
    }

    /// Counts the workers and registers with the watch.
    fn start_watching(self: &Arc<Self>) -> Slots {
        let tokio = tokio::runtime::Handle::try_current().ok();
        let workers = tokio.as_ref().map_or(1, |tokio| tokio.metrics().num_workers());
        let multi =
            tokio.as_ref().is_some_and(|tokio| tokio.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        watch().register(Arc::downgrade(self));
        Slots {
            slots: (0..workers.saturating_sub(1).max(1)).map(|_| Slot::default()).collect(),
            tokio: if multi { tokio } else { None },
        }
    }
}

/// An inline run in progress; its slot is given back on drop. Under
/// [`Dispatch::Inline`](crate::Dispatch::Inline) there is no slot to keep.
pub(crate) struct InlineRun<'a> {
    slot: Option<&'a Slot>,
}

impl InlineRun<'_> {
    /// A run under `Dispatch::Inline`, which counts nothing.
    pub(crate) fn uncounted() -> Self {
        Self { slot: None }
    }
}

impl Drop for InlineRun<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            slot.started.store(0, Ordering::Release);
        }
    }
}

/// The process's watch over inline runs.
struct Watch {
    epoch: Instant,
    services: Mutex<Vec<Weak<InlineRuns>>>,
    /// The watch thread, once started; `None` when it could not be.
    thread: OnceLock<Option<Thread>>,
    asleep: AtomicBool,
}

fn watch() -> &'static Watch {
    static WATCH: OnceLock<Watch> = OnceLock::new();
    WATCH.get_or_init(|| Watch {
        epoch: Instant::now(),
        services: Mutex::new(Vec::new()),
        thread: OnceLock::new(),
        asleep: AtomicBool::new(false),
    })
}

impl Watch {
    /// Now, as a run's start: never 0, the mark of a free slot.
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1
    }

    fn register(&'static self, runs: Weak<InlineRuns>) {
        self.services.lock().unwrap_or_else(PoisonError::into_inner).push(runs);
        let thread = self.thread.get_or_init(|| {
            let spawned = std::thread::Builder::new().name("scale-inline-watch".into()).spawn(move || self.run());
            match spawned {
                Ok(handle) => Some(handle.thread().clone()),
                Err(err) => {
                    tracing::warn!(error = %err, "no thread to watch inline runs: a long run may hold up other connections");
                    None
                }
            }
        });
        if let Some(thread) = thread {
            thread.unpark();
        }
    }

    fn wake_if_asleep(&self) {
        if self.asleep.load(Ordering::SeqCst)
            && self.asleep.swap(false, Ordering::SeqCst)
            && let Some(Some(thread)) = self.thread.get()
        {
            thread.unpark();
        }
    }

    /// The watch thread.
    fn run(&self) {
        let long = u64::try_from(LONG_RUN.as_nanos()).unwrap_or(u64::MAX);
        let mut last_busy = Instant::now();
        loop {
            std::thread::sleep(TICK);
            let services: Vec<Arc<InlineRuns>> = {
                let mut services = self.services.lock().unwrap_or_else(PoisonError::into_inner);
                services.retain(|runs| runs.strong_count() > 0);
                services.iter().filter_map(Weak::upgrade).collect()
            };
            let now = self.now();
            let mut busy = false;
            for slots in services.iter().filter_map(|runs| runs.slots.get()) {
                for slot in &slots.slots {
                    let started = slot.started.load(Ordering::Acquire);
                    if started == 0 {
                        continue;
                    }
                    busy = true;
                    if now.saturating_sub(started) >= long
                        && slot.woken.swap(started, Ordering::Relaxed) != started
                        && let Some(tokio) = &slots.tokio
                    {
                        // From outside the runtime, a spawned task goes to
                        // its shared queue and wakes an idle worker.
                        drop(tokio.spawn(async {}));
                    }
                }
            }
            if busy {
                last_busy = Instant::now();
            } else if last_busy.elapsed() >= IDLE_AFTER {
                self.asleep.store(true, Ordering::SeqCst);
                // A run that entered before `asleep` was set, after the look
                // above, is seen here; one that enters later finds `asleep`
                // set and unparks this thread (an unpark before the park
                // makes it return at once).
                let running = services
                    .iter()
                    .filter_map(|runs| runs.slots.get())
                    .any(|slots| slots.slots.iter().any(|slot| slot.started.load(Ordering::SeqCst) != 0));
                if !running {
                    std::thread::park();
                }
                self.asleep.store(false, Ordering::SeqCst);
                last_busy = Instant::now();
            }
        }
    }
}
