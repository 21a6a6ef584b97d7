//! Async native handlers and the runner threads of
//! [`Instance::run_async`](crate::Instance::run_async).
//!
//! A guest calls `next` synchronously and expects its answer in the same
//! call, and the native handlers run nested inside the `next` of the last
//! guest (itself nested inside the `next` of the guests before it). So a run
//! that waits for an async handler keeps the host frames of every guest of
//! the chain alive meanwhile, and they may not move to another thread:
//! wasmer keeps per-thread state for each guest call in progress (the trap
//! handler context of its innermost call, the store context stack), which
//! is only right on the thread that made the call, and only while that
//! call is the innermost one on its thread. Two runs suspended on one
//! thread and resumed in another order than last-in first-out would leave
//! a resumed guest with another run's trap context, and a trap of it would
//! take the process down.
//!
//! So `run_async` runs the chain on a runner thread of its own, and a
//! runner holds one run at a time. When the chain reaches an async handler,
//! the runner hands the handler's future to the task awaiting `run_async`,
//! which polls it in its own async runtime (its timers, its I/O), and the
//! runner sleeps until the result comes back, the run's deadline passes or
//! the task gives up the run. The task's thread is never blocked; the runner
//! sleeps, holding the run's stack.
//!
//! Outside `run_async` (in [`Instance::run`](crate::Instance::run)), an
//! async handler's future is polled on the running thread, which sleeps
//! between polls: fine for futures that need no async runtime's reactor.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::time::Duration;

use crate::deadline;
use crate::error::HandlerError;

/// The future of an async native handler: the context back, or an error.
pub(crate) type HandlerFuture<S> = Pin<Box<dyn Future<Output = Result<S, HandlerError>> + Send + 'static>>;

/// An async native handler, as an instance keeps it.
pub(crate) type BoxedAsyncHandler<S> = Box<dyn FnMut(S) -> HandlerFuture<S> + Send>;

/// A handler's future with its output type erased, as it travels to the
/// task that polls it.
type ErasedFuture = Pin<Box<dyn Future<Output = Box<dyn Any + Send>> + Send>>;

/// Why an async handler's wait ended without the handler's answer.
#[derive(Debug)]
pub(crate) enum Interrupted {
    /// The run's deadline passed.
    Deadline,
    /// The task awaiting `run_async` dropped its future.
    Abandoned,
}

/// Waits for an async handler's `future` on behalf of the run on this
/// thread: through the task awaiting `run_async` on a runner thread, else
/// by polling it here. Ends early at the run's deadline.
pub(crate) fn await_handler<S: Send + 'static>(
    future: HandlerFuture<S>,
) -> Result<Result<S, HandlerError>, Interrupted> {
    let exchange = CURRENT.with(|current| current.borrow().clone());
    let Some(exchange) = exchange else { return block_on(future) };
    let erased: ErasedFuture = Box::pin(async move { Box::new(future.await) as Box<dyn Any + Send> });
    let answer = exchange.await_on_caller(erased)?;
    match answer.downcast::<Result<S, HandlerError>>() {
        Ok(answer) => Ok(*answer),
        // The answer is made above from the same type.
        Err(_) => unreachable!("an async handler's answer has the handler's type"),
    }
}

/// Polls `future` on this thread until it is ready or the run's deadline
/// passes, sleeping while it is pending.
fn block_on<T>(mut future: Pin<Box<dyn Future<Output = T> + Send>>) -> Result<T, Interrupted> {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = TaskContext::from_waker(&waker);
    loop {
        if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return Ok(value);
        }
        match deadline::time_left() {
            None => std::thread::park(),
            Some(left) if left.is_zero() => return Err(Interrupted::Deadline),
            Some(left) => std::thread::park_timeout(left),
        }
    }
}

thread_local! {
    /// The exchange of the `run_async` this runner thread is running.
    static CURRENT: std::cell::RefCell<Option<Arc<Exchange>>> = const { std::cell::RefCell::new(None) };
}

/// What a runner and the task awaiting its run say to each other.
#[derive(Default)]
pub(crate) struct Exchange {
    state: Mutex<State>,
    /// The runner waits on it for a handler's answer.
    runner: Condvar,
}

#[derive(Default)]
struct State {
    /// A handler's future for the task to poll, not yet taken.
    future: Option<ErasedFuture>,
    /// Bumped for each future handed over, so that a late answer to a wait
    /// the runner gave up on is never taken for the next one.
    round: u64,
    /// The answer to the future of `round`.
    answer: Option<(u64, Box<dyn Any + Send>)>,
    /// What the run ended with, once it has.
    done: Option<Box<dyn Any + Send>>,
    /// Set when the task dropped its future before the run ended.
    abandoned: bool,
    /// The task's waker.
    waker: Option<Waker>,
}

impl Exchange {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runner side: hands `future` to the task and waits for its answer.
    fn await_on_caller(&self, future: ErasedFuture) -> Result<Box<dyn Any + Send>, Interrupted> {
        let mut state = self.lock();
        if state.abandoned {
            return Err(Interrupted::Abandoned);
        }
        state.round += 1;
        let round = state.round;
        state.future = Some(future);
        state.answer = None;
        if let Some(waker) = &state.waker {
            waker.wake_by_ref();
        }
        loop {
            if let Some((answered, _)) = &state.answer
                && *answered == round
            {
                let (_, answer) = state.answer.take().expect("checked above");
                return Ok(answer);
            }
            if state.abandoned {
                return Err(Interrupted::Abandoned);
            }
            state = match deadline::time_left() {
                None => self.runner.wait(state).unwrap_or_else(PoisonError::into_inner),
                Some(left) if left.is_zero() => {
                    // The task drops the future when it sees the run end.
                    return Err(Interrupted::Deadline);
                }
                Some(left) => self.runner.wait_timeout(state, left).unwrap_or_else(PoisonError::into_inner).0,
            };
        }
    }

    /// Runner side: the run ended with `outcome`, which goes to the task,
    /// or comes back when the task gave the run up.
    fn finish(&self, outcome: Box<dyn Any + Send>) -> Option<Box<dyn Any + Send>> {
        let mut state = self.lock();
        let future = state.future.take();
        if state.abandoned {
            drop(state);
            drop(future);
            return Some(outcome);
        }
        state.done = Some(outcome);
        let waker = state.waker.take();
        drop(state);
        drop(future);
        if let Some(waker) = waker {
            waker.wake();
        }
        None
    }
}

/// The task side of a run on a runner thread: polls the handler futures the
/// runner hands over, and picks up what the run ended with.
pub(crate) struct Caller {
    exchange: Arc<Exchange>,
    /// The handler future being polled, and the round it answers.
    polling: Option<(u64, ErasedFuture)>,
}

impl Caller {
    pub(crate) fn new(exchange: Arc<Exchange>) -> Self {
        Self { exchange, polling: None }
    }

    /// Drives the run: `Ready` with what the run ended with.
    pub(crate) fn poll(&mut self, cx: &mut TaskContext<'_>) -> Poll<Box<dyn Any + Send>> {
        loop {
            if let Some((round, future)) = &mut self.polling
                && let Poll::Ready(answer) = future.as_mut().poll(cx)
            {
                let round = *round;
                self.polling = None;
                let mut state = self.exchange.lock();
                state.answer = Some((round, answer));
                drop(state);
                self.exchange.runner.notify_all();
            }
            let mut state = self.exchange.lock();
            if let Some(outcome) = state.done.take() {
                drop(state);
                // A handler whose wait the runner gave up (at the deadline)
                // is dropped here, on the task's thread.
                self.polling = None;
                return Poll::Ready(outcome);
            }
            if let Some(future) = state.future.take() {
                let round = state.round;
                drop(state);
                self.polling = Some((round, future));
                continue;
            }
            if !state.waker.as_ref().is_some_and(|waker| waker.will_wake(cx.waker())) {
                state.waker = Some(cx.waker().clone());
            }
            return Poll::Pending;
        }
    }

    /// Gives the run up: what it ended with if it has ended, else `None`,
    /// and the runner stops it at its next host call and disposes of it.
    pub(crate) fn abandon(mut self) -> Option<Box<dyn Any + Send>> {
        // A handler future's drop may do anything: not under the lock.
        self.polling = None;
        let mut state = self.exchange.lock();
        if let Some(outcome) = state.done.take() {
            return Some(outcome);
        }
        state.abandoned = true;
        let future = state.future.take();
        drop(state);
        self.exchange.runner.notify_all();
        drop(future);
        None
    }
}

/// A runner thread, idle or new, ready for one run.
pub(crate) struct Runner(std::sync::mpsc::Sender<Job>);

/// Takes a runner for a run.
///
/// # Errors
///
/// No runner was idle and the operating system refused a new thread.
pub(crate) fn runner() -> Result<Runner, std::io::Error> {
    runners::take().map(Runner)
}

impl Runner {
    /// Runs `run` on this runner for the task that polls a [`Caller`] of
    /// `exchange`, and hands what it returns to that task; if the task has
    /// given the run up by then, `dispose` gets it instead, on the runner.
    pub(crate) fn run<R, D>(self, exchange: Arc<Exchange>, run: R, dispose: D)
    where
        R: FnOnce() -> Box<dyn Any + Send> + Send + 'static,
        D: FnOnce(Box<dyn Any + Send>) + Send + 'static,
    {
        let job: Job = Box::new(move || {
            CURRENT.with(|current| *current.borrow_mut() = Some(Arc::clone(&exchange)));
            let outcome = run();
            CURRENT.with(|current| *current.borrow_mut() = None);
            if let Some(outcome) = exchange.finish(outcome) {
                dispose(outcome);
            }
        });
        runners::send(self.0, job);
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The runner threads: started when no idle one is left, kept idle for
/// [`runners::IDLE`], then ended.
mod runners {
    use std::sync::mpsc;

    use super::*;

    /// How long a runner waits for its next run before it ends.
    pub(super) const IDLE: Duration = Duration::from_secs(30);

    /// The idle runners, each by its number and the sender of its runs.
    static IDLE_RUNNERS: Mutex<Vec<(u64, mpsc::Sender<Job>)>> = Mutex::new(Vec::new());

    fn idle() -> MutexGuard<'static, Vec<(u64, mpsc::Sender<Job>)>> {
        IDLE_RUNNERS.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An idle runner, or a new one: waiting for the job sent to it.
    pub(super) fn take() -> Result<mpsc::Sender<Job>, std::io::Error> {
        if let Some((_, runner)) = idle().pop() {
            return Ok(runner);
        }
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let number = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (sender, runs) = mpsc::channel::<Job>();
        let own = sender.clone();
        std::thread::Builder::new().name("scale-run".into()).spawn(move || serve(number, &own, &runs))?;
        Ok(sender)
    }

    /// Sends `job` to `runner`, taken with [`take`].
    pub(super) fn send(runner: mpsc::Sender<Job>, job: Job) {
        // A runner taken out of the idle list waits for its job until it has
        // it (see `serve`), so this only fails if that thread died; the job
        // then runs here rather than not at all.
        if let Err(mpsc::SendError(job)) = runner.send(job) {
            job();
        }
    }

    /// A runner's life: the jobs sent to it, one at a time, until it has
    /// been idle for [`IDLE`].
    fn serve(number: u64, own: &mpsc::Sender<Job>, runs: &mpsc::Receiver<Job>) {
        // A new runner gets its first job from whoever started it.
        let Ok(mut job) = runs.recv() else { return };
        loop {
            job();
            idle().push((number, own.clone()));
            job = match runs.recv_timeout(IDLE) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let mut idle = idle();
                    if let Some(at) = idle.iter().position(|(n, _)| *n == number) {
                        // Nobody took this runner: it ends.
                        idle.swap_remove(at);
                        return;
                    }
                    drop(idle);
                    // Somebody took it and is sending a job.
                    match runs.recv() {
                        Ok(job) => job,
                        Err(_) => return,
                    }
                }
                // Not while `own` lives.
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
        }
    }
}
