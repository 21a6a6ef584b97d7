//! The chain of an instance: a linked list of guests ([`Link`]s), each
//! holding the rest of the chain, ending in the native handlers.

use std::sync::Arc;

use crate::awaiting::{self, BoxedAsyncHandler, Interrupted};
use crate::error::{Error, HandlerError};
use crate::guest::Guest;
use crate::pool::FunctionRef;
use crate::signature::Signature;
use crate::trap::printable;

/// A native handler, run after the last function of the chain.
pub(crate) type BoxedHandler<S> = Box<dyn FnMut(&mut S) -> Result<(), HandlerError> + Send>;

/// A native handler: one that answers at once, or one that is awaited.
pub(crate) enum Handler<S> {
    Sync(BoxedHandler<S>),
    Async(BoxedAsyncHandler<S>),
}

/// What a guest's `next` runs: the next guest, or the native handlers.
pub(crate) enum Chain<S: Signature> {
    Guest(Link<S>),
    Handlers(Vec<Handler<S>>),
}

/// A guest in the chain. What follows it is in `guest.next`.
pub(crate) struct Link<S: Signature> {
    /// The guest's function, held through the reference of the thread that
    /// made the instance.
    pub function: Arc<FunctionRef<S>>,
    /// Boxed, so that the pool hands it out and takes it back by pointer.
    pub guest: Box<Guest<S>>,
    /// Set when the guest trapped or broke the ABI: it must not run again.
    pub poisoned: bool,
}

impl<S: Signature> Chain<S> {
    /// Runs this part of the chain on `ctx`, in place, on the run's CPU
    /// budget `points` (what is left stays there).
    pub fn run(&mut self, ctx: &mut S, points: &mut i64) -> Result<(), Error> {
        match self {
            Chain::Guest(link) => link.run(ctx, points),
            Chain::Handlers(handlers) => {
                for (index, handler) in handlers.iter_mut().enumerate() {
                    match handler {
                        Handler::Sync(handler) => handler(ctx).map_err(|source| Error::Handler { index, source })?,
                        Handler::Async(handler) => *ctx = run_async_handler(handler, std::mem::take(ctx), index)?,
                    }
                }
                Ok(())
            }
        }
    }

    /// Appends a handler to the end of the chain.
    pub fn add_handler(&mut self, handler: Handler<S>) {
        let mut at = Some(self);
        while let Some(Chain::Guest(link)) = at {
            at = link.guest.next.as_mut();
        }
        if let Some(Chain::Handlers(handlers)) = at {
            handlers.push(handler);
        }
    }

    /// Replaces the guests of the chain that may not run again with fresh
    /// ones from their pools.
    pub fn replace_poisoned(&mut self) -> Result<(), Error> {
        let mut at = Some(self);
        while let Some(Chain::Guest(link)) = at {
            if link.poisoned {
                let fresh = link.function.checkout()?;
                let mut old = std::mem::replace(&mut link.guest, fresh);
                link.guest.next = old.next.take();
                link.function.checkin(old, true);
                link.poisoned = false;
            }
            at = link.guest.next.as_mut();
        }
        Ok(())
    }

    /// Returns every guest of the chain to its pool.
    pub fn release(self) {
        let mut next = Some(self);
        while let Some(Chain::Guest(Link { function, mut guest, poisoned })) = next {
            next = guest.next.take();
            function.checkin(guest, poisoned);
        }
    }
}

/// Runs an async native handler on `ctx` and waits for its answer (see
/// [`awaiting`]).
fn run_async_handler<S: Signature>(handler: &mut BoxedAsyncHandler<S>, ctx: S, index: usize) -> Result<S, Error> {
    match awaiting::await_handler(handler(ctx)) {
        Ok(Ok(ctx)) => Ok(ctx),
        Ok(Err(source)) => Err(Error::Handler { index, source }),
        // The guest that called `next` sees the deadline has passed and stops.
        Err(Interrupted::Deadline) => Err(Error::Handler {
            index,
            source: HandlerError::new("the run's deadline passed while the handler was awaited"),
        }),
        Err(Interrupted::Abandoned) => Err(Error::Abandoned),
    }
}

impl<S: Signature> Link<S> {
    /// Runs this guest (and, through its `next`, the rest of the chain) on
    /// `ctx`, on the run's CPU budget `points`. `ctx` is replaced only when
    /// the guest succeeds.
    pub fn run(&mut self, ctx: &mut S, points: &mut i64) -> Result<(), Error> {
        let _span = tracing::debug_span!("function", name = %self.function.name).entered();
        if self.poisoned {
            // Instances replace poisoned guests before each run; reaching one is a bug.
            return Err(Error::Trap {
                function: self.function.name.to_string(),
                trap: "instance was discarded".into(),
            });
        }
        // Poisoned until the call returns. A native handler's panic unwinds
        // through it (wasmer carries the panic out of the guest): the guest,
        // stopped halfway, must not run again or go back to the pool, and
        // the rest of the chain comes back to the guest before the panic
        // goes on, so that the instance can replace it and release the rest
        // as usual.
        self.poisoned = true;
        let (outcome, rest_failure) = self.guest.run(ctx, &self.function, points);
        self.poisoned = false;
        let result = self.settle(outcome, ctx, rest_failure);
        // Under per-run isolation the run ends by going back to the state
        // after start-up, whether the guest returned or trapped: a reset
        // guest may run again. One that cannot be reset is discarded.
        if self.guest.is_isolated() {
            match self.guest.reset() {
                Ok(()) => self.poisoned = false,
                Err(err) => {
                    tracing::debug!(function = %self.function.name, %err, "instance replaced: it cannot be reset");
                    self.poisoned = true;
                }
            }
        }
        result
    }

    /// The run's result from the guest's `outcome` and the first failure
    /// further down the chain.
    fn settle(
        &mut self,
        outcome: Result<Result<(), String>, Error>,
        ctx: &mut S,
        rest_failure: Option<Error>,
    ) -> Result<(), Error> {
        match outcome {
            Ok(Ok(())) => {
                std::mem::swap(ctx, &mut self.guest.result_context);
                Ok(())
            }
            // A guest passing on an error from further down keeps the original error.
            Ok(Err(message)) => Err(rest_failure.unwrap_or_else(|| Error::Guest {
                function: self.function.name.to_string(),
                message: printable(&message),
            })),
            Err(err) => {
                self.poisoned = err.poisons_instance();
                // A budget or deadline that ran out further down names the
                // function that was running then.
                match (err, rest_failure) {
                    (
                        Error::Deadline { .. } | Error::CpuBudget { .. },
                        Some(below @ (Error::Deadline { .. } | Error::CpuBudget { .. })),
                    ) => Err(below),
                    (err, _) => Err(err),
                }
            }
        }
    }
}
