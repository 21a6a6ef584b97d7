//! [`Instance`]: one use of a runtime's chain, and its runs, in place
//! ([`Instance::run`]) or as a future ([`Instance::run_async`]).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use crate::awaiting::{self, Caller, Exchange};
use crate::chain::{Chain, Handler};
use crate::deadline;
use crate::error::{Error, HandlerError};
use crate::metering;
use crate::signature::Signature;

/// One use of a runtime's chain: a context, the guest instances to run it
/// through, and the native handlers that follow the last function.
///
/// Reusable for many runs. `Send`, but used through `&mut self`, so one
/// thread at a time uses it. Its guest instances go back to the runtime's
/// pools when it drops.
pub struct Instance<S: Signature = scale_signature_http::Context> {
    chain: Option<Chain<S>>,
    /// Always present; an `Option` so that `drop` can hand it back to the
    /// chain's first guest for the next instance. Boxed, so that handing
    /// it out, moving the instance and handing it back move a pointer, not
    /// the whole context (several hundred bytes for HTTP).
    context: Option<Box<S>>,
    /// Whether the context holds a run's result, which the next run must
    /// not see: the next change or run starts from a default context.
    holds_result: bool,
}

impl<S: Signature> fmt::Debug for Instance<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instance").finish_non_exhaustive()
    }
}

impl<S: Signature> Instance<S> {
    /// Adds a native handler, run after the last function (and after the
    /// handlers added before it) when that function calls `next`. A handler's
    /// error comes back to the calling guest as the error of its `next`.
    pub fn with_handler<F>(mut self, handler: F) -> Self
    where
        F: FnMut(&mut S) -> Result<(), HandlerError> + Send + 'static,
    {
        self.add_handler(Handler::Sync(Box::new(handler)));
        self
    }

    /// Adds an async native handler: like [`with_handler`](Self::with_handler),
    /// but the handler takes the context and returns a future that gives it
    /// back (or fails). While the future is pending, the chain waits inside
    /// the last function's `next`.
    ///
    /// Under [`run_async`](Self::run_async) the future is polled by the task
    /// awaiting the run, in that task's async runtime (its timers and I/O
    /// work), and no thread of that runtime is blocked meanwhile. Under
    /// [`run`](Self::run) it is polled on the thread calling `run`, which
    /// sleeps while it is pending: there, a future that needs an async
    /// runtime's reactor (a tokio timer or socket) does not work.
    ///
    /// A run with a deadline ([`RuntimeBuilder::deadline`]) does not wait
    /// for the future past it: the run fails with [`Error::Deadline`] and the
    /// future is dropped.
    ///
    /// ```no_run
    /// # async fn example(runtime: scale_runtime::Runtime) -> Result<(), scale_runtime::Error> {
    /// let mut instance = runtime.instance()?.with_async_handler(|mut ctx: scale_runtime::Context| async move {
    ///     // Await a database, another service, a timer...
    ///     ctx.response.set_body_string("from an async handler");
    ///     Ok(ctx)
    /// });
    /// instance.run_async().await?;
    /// # Ok(()) }
    /// ```
    pub fn with_async_handler<F, Fut>(mut self, mut handler: F) -> Self
    where
        F: FnMut(S) -> Fut + Send + 'static,
        Fut: Future<Output = Result<S, HandlerError>> + Send + 'static,
    {
        self.add_handler(Handler::Async(Box::new(move |ctx| Box::pin(handler(ctx)))));
        self
    }

    /// The context: before a run, what the chain will get; after it, what
    /// the chain made (for HTTP, the response, and the request as the chain
    /// left it).
    pub fn context(&self) -> &S {
        self.context.as_deref().expect("an instance has a context until it drops")
    }

    /// The context, for setting what the next run gets.
    ///
    /// Each run starts from a default context: after a run, the first call
    /// of `context_mut` (or the next [`Instance::run`], whichever comes first)
    /// sets the context back to its default, so nothing a run left, such as a
    /// response header, reaches the next one. Read a run's result with
    /// [`Instance::context`] before setting up the next run.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let runtime = scale_runtime::Runtime::new([])?;
    /// let mut instance = runtime.instance()?;
    /// for name in ["Ada", "Grace"] {
    ///     // A default request and response, whatever the last run made.
    ///     instance.context_mut().request.set_body_string(name);
    ///     instance.run()?;
    ///     println!("{}", instance.context().response.body_str().unwrap_or(""));
    /// }
    /// # Ok(()) }
    /// ```
    pub fn context_mut(&mut self) -> &mut S {
        let context = self.context.as_deref_mut().expect("an instance has a context until it drops");
        if std::mem::take(&mut self.holds_result) {
            context.reset();
        }
        context
    }

    /// Replaces the context, returning the old one (after a run, the
    /// result).
    pub fn set_context(&mut self, context: S) -> S {
        self.holds_result = false;
        let slot = self.context.as_deref_mut().expect("an instance has a context until it drops");
        std::mem::replace(slot, context)
    }

    /// Runs the chain on the context.
    ///
    /// The chain gets what was set since the last run on a default context
    /// (see [`Instance::context_mut`]): running an instance again without
    /// setting anything runs it on a default context, not on the last result.
    ///
    /// On success the context holds the chain's result. On error it holds
    /// what was set before the run, except for changes made by native
    /// handlers that ran before the failure. A guest instance that trapped
    /// or broke the ABI is replaced by a fresh one before the next run (under
    /// [`Isolation::PerRun`], reset like after any run).
    ///
    /// # Errors
    ///
    /// [`Error::Guest`], [`Error::Panic`], [`Error::Trap`],
    /// [`Error::MalformedOutput`], [`Error::MemoryLimit`], [`Error::CpuBudget`],
    /// [`Error::Deadline`], [`Error::Handler`] (when a guest passed a
    /// handler's error on), and [`Error::Instantiation`] when a replacement
    /// instance cannot be made.
    /// [`Error::Abandoned`] once a [`run_async`](Self::run_async) of this
    /// instance was given up.
    pub fn run(&mut self) -> Result<(), Error> {
        let (Some(chain), Some(context)) = (self.chain.as_mut(), self.context.as_deref_mut()) else {
            return Err(Error::Abandoned);
        };
        if std::mem::take(&mut self.holds_result) {
            context.reset();
        }
        let outcome = run_chain(chain, context);
        self.holds_result = true;
        outcome
    }

    /// Runs the chain on the context, as [`run`](Self::run) does, on a
    /// thread the runtime keeps for such runs, and resolves when the run
    /// ends. Async native handlers ([`with_async_handler`](Self::with_async_handler))
    /// are awaited here, in the async runtime polling this future (tokio's
    /// multi-thread or current-thread runtime, or any other).
    ///
    /// The guests' code never runs on the thread polling the future: a long
    /// run, or a handler that awaits, holds no thread of the async runtime.
    /// Each run in progress holds one of the runtime's runner threads,
    /// sleeping while a handler awaits (a guest's `next` keeps the host
    /// stack of the whole chain alive until it returns, so its run stays on
    /// its thread; the crate's `awaiting` module says why). Runner threads
    /// are started when none is idle and end after 30 s idle.
    ///
    /// The CPU budget, the deadline and the memory limits apply as in `run`;
    /// a deadline also ends a wait for an async handler.
    ///
    /// # Cancellation
    ///
    /// Dropping the future before it resolves gives the run up: a handler
    /// it awaits is dropped, the guest waiting for that handler and every
    /// guest above it stop at once (no guest code runs after that), and
    /// their instances are discarded, never pooled. The instance keeps no
    /// chain (its context is reset to the default), and later runs on it
    /// fail with [`Error::Abandoned`]; take a new instance from the
    /// [`Runtime`]. A run that had already ended keeps the instance whole.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run), and [`Error::Runner`] when no thread could be
    /// started for the run. A native handler's panic is resumed here.
    ///
    /// ```no_run
    /// # async fn example(runtime: scale_runtime::Runtime) -> Result<(), scale_runtime::Error> {
    /// let mut instance = runtime.instance()?.with_async_handler(|mut ctx: scale_runtime::Context| async move {
    ///     ctx.response.headers_mut().set("x-served-by", ["async"]);
    ///     Ok(ctx)
    /// });
    /// instance.context_mut().request.set_body_string("Hello");
    /// instance.run_async().await?;
    /// assert_eq!(instance.context().response.status_code, 200);
    /// # Ok(()) }
    /// ```
    pub fn run_async(&mut self) -> RunAsync<'_, S> {
        RunAsync { instance: self, caller: None, done: false }
    }
}

/// Runs `chain` on `context`: what [`Instance::run`] does.
fn run_chain<S: Signature>(chain: &mut Chain<S>, context: &mut S) -> Result<(), Error> {
    let _span = tracing::debug_span!("run").entered();
    let limits = match chain {
        Chain::Guest(head) => Some(head.function.limits),
        Chain::Handlers(_) => None,
    };
    // The deadline covers making replacement instances too.
    let _run = limits.and_then(|limits| limits.deadline).map(deadline::begin);
    chain.replace_poisoned()?;
    let mut points = metering::initial_points(limits.and_then(|limits| limits.cpu_budget).unwrap_or(u64::MAX));
    chain.run(context, &mut points)
}

/// What a run on a runner thread hands back: the chain, the context, and
/// how the run ended (a panic's payload if a native handler panicked).
type Outcome<S> = (Chain<S>, Box<S>, std::thread::Result<Result<(), Error>>);

/// The future of [`Instance::run_async`]: resolves when the run ends.
///
/// `Send`; dropping it before it resolves gives the run up (see
/// [`Instance::run_async`]).
#[must_use = "a run_async future does nothing unless awaited"]
pub struct RunAsync<'a, S: Signature = scale_signature_http::Context> {
    instance: &'a mut Instance<S>,
    /// Present while the run is on its runner.
    caller: Option<Caller>,
    done: bool,
}

impl<S: Signature> fmt::Debug for RunAsync<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunAsync").field("running", &self.caller.is_some()).field("done", &self.done).finish()
    }
}

impl<S: Signature> RunAsync<'_, S> {
    /// Puts what a run handed back into the instance, and says how it ended.
    fn restore(&mut self, outcome: Box<dyn std::any::Any + Send>) -> std::thread::Result<Result<(), Error>> {
        match outcome.downcast::<Outcome<S>>() {
            Ok(outcome) => {
                let (chain, context, result) = *outcome;
                self.instance.chain = Some(chain);
                self.instance.context = Some(context);
                self.instance.holds_result = true;
                result
            }
            // Runs hand back exactly this type (see `start`).
            Err(_) => unreachable!("a run hands back its chain, context and result"),
        }
    }

    /// Moves the chain and the context to a runner thread and starts the run.
    fn start(&mut self) -> Result<Caller, Error> {
        let runner = awaiting::runner().map_err(|source| Error::Runner { source })?;
        if self.instance.chain.is_none() || self.instance.context.is_none() {
            return Err(Error::Abandoned);
        }
        let (Some(chain), Some(mut context)) = (self.instance.chain.take(), self.instance.context.take()) else {
            unreachable!("both checked above");
        };
        if std::mem::take(&mut self.instance.holds_result) {
            context.reset();
        }
        let exchange = Arc::new(Exchange::default());
        let run = move || -> Box<dyn std::any::Any + Send> {
            let (mut chain, mut context) = (chain, context);
            // A native handler's panic is resumed on the task awaiting the run,
            // as `run` lets it reach its caller.
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_chain(&mut chain, &mut *context)));
            Box::new((chain, context, result))
        };
        // Nobody waits for the run any more: its guests go back to their
        // pools, or are discarded if the run was stopped halfway (a guest
        // that stopped is poisoned).
        let dispose = |outcome: Box<dyn std::any::Any + Send>| {
            if let Ok(outcome) = outcome.downcast::<Outcome<S>>() {
                let (chain, _, _) = *outcome;
                chain.release();
            }
        };
        runner.run(Arc::clone(&exchange), run, dispose);
        Ok(Caller::new(exchange))
    }
}

impl<S: Signature> Future for RunAsync<'_, S> {
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(Err(Error::Abandoned));
        }
        if this.caller.is_none() {
            match this.start() {
                Ok(caller) => this.caller = Some(caller),
                Err(err) => {
                    this.done = true;
                    return Poll::Ready(Err(err));
                }
            }
        }
        let caller = this.caller.as_mut().expect("started above");
        let Poll::Ready(outcome) = caller.poll(cx) else { return Poll::Pending };
        this.caller = None;
        this.done = true;
        match this.restore(outcome) {
            Ok(result) => Poll::Ready(result),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl<S: Signature> Drop for RunAsync<'_, S> {
    fn drop(&mut self) {
        let Some(caller) = self.caller.take() else { return };
        match caller.abandon() {
            // The run had ended: the instance is whole again. A panic of
            // that run has nobody to reach.
            Some(outcome) => drop(self.restore(outcome)),
            None => self.instance.context = Some(Box::default()),
        }
    }
}

impl<S: Signature> Drop for Instance<S> {
    fn drop(&mut self) {
        if let Some(mut chain) = self.chain.take() {
            if let Chain::Guest(head) = &mut chain {
                head.guest.parked_context = self.context.take();
            }
            chain.release();
        }
    }
}

impl<S: Signature> Instance<S> {
    /// An instance running `chain`, with `context` to set up its first run.
    pub(crate) fn new(chain: Chain<S>, context: Box<S>) -> Self {
        Instance { chain: Some(chain), context: Some(context), holds_result: false }
    }

    /// Appends a handler to the end of the chain (dropped on an instance
    /// whose chain was abandoned: it never runs again).
    fn add_handler(&mut self, handler: Handler<S>) {
        if let Some(chain) = &mut self.chain {
            chain.add_handler(handler);
        }
    }
}
