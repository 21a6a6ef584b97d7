//! Write Scale Functions in Rust.
//!
//! A Scale function receives the [`Context`] of an HTTP request, changes the
//! response, and may hand the context on to the next function of the chain
//! with [`Context::next`]. Mark the handler with [`function`]:
//!
//! ```
//! use scale_guest::{Context, Error};
//!
//! #[scale_guest::function]
//! fn scale(ctx: &mut Context) -> Result<(), Error> {
//!     let name = ctx.request().headers().first("x-name").unwrap_or("World").to_owned();
//!     ctx.response().set_body_string(format!("Hello, {name}!"));
//!     ctx.response().headers_mut().set("content-type", ["text/plain"]);
//!     ctx.next()
//! }
//! # fn main() {
//! # let mut ctx = Context::default();
//! # // Natively there is no host, so `next` reports that:
//! # assert!(scale(&mut ctx).is_err());
//! # assert_eq!(ctx.response().body_str(), Some("Hello, World!"));
//! # }
//! ```
//!
//! Build it as a `cdylib` for `wasm32-unknown-unknown` (or `wasm32-wasip1`)
//! and pack the module into a `.scale` file; the project's
//! `docs/guest-rust.md` walks through it from `cargo new`.
//!
//! # What the handler may do
//!
//! - Read and change the request and the response ([`Context::request`],
//!   [`Context::response`]); the fields of the signature's context are
//!   reachable through `Deref` too (`ctx.request.body`).
//! - Call [`Context::next`] to run the rest of the chain (the next function,
//!   or the host's native handlers after the last one). The context then holds
//!   what came back; an error further down comes back as the `Err` of `next`.
//! - Return `Err(e)` for any `e: Display`: the host's run fails with that message.
//! - Panic: the host reports a panic of this function, with the message.
//!
//! Natively (outside WebAssembly) the handler is an ordinary function, so it
//! can be unit-tested; [`Context::next`] then returns an error, or runs the
//! stand-in for the rest of the chain that [`testing::fake_next`] set.

use std::cell::{Cell, UnsafeCell};
use std::fmt;
use std::ops::{Deref, DerefMut};

pub use scale_guest_macros::function;
pub use scale_signature_http as signature;
pub use scale_signature_http::{Bytes, Headers, Request, Response};

/// The context a Scale function works on: the request and the response so far.
///
/// Derefs to [`scale_signature_http::Context`] for direct field access.
///
/// The request is decoded when first looked at: a function that only
/// writes the response (and calls `next`) never pays for decoding and
/// encoding the request, which it hands on as the bytes it was given.
#[derive(Default)]
pub struct Context {
    /// The context. Its request is stale while `request_pending` is set.
    ///
    /// Invariant: while `request_pending` is set, no reference to `inner`
    /// as a whole or to its request exists (a short-lived one to the
    /// response alone may: `encode_as_result_into`). Every way to a reference that
    /// covers the request (`inner`) clears the flag first, and only `&mut
    /// self` methods set it (which no reference can outlive), so
    /// `decode_pending_request` may write the request through a `&self`.
    inner: UnsafeCell<signature::Context>,
    /// Whether the request is still encoded, in `raw_request`.
    request_pending: Cell<bool>,
    /// The encoding of the request this context was given. (A `Cell`, so
    /// that the lazy decode, under `&self`, can hand a large one over to the
    /// request's body.)
    raw_request: Cell<Vec<u8>>,
    /// Why the pending request did not decode, when it did not.
    request_error: Cell<Option<String>>,
    /// `inner` encoded as a successful run result, kept when the last
    /// `next` (which was sent the context inside) gave the context back
    /// unchanged and nothing has borrowed `inner` mutably since: the run's
    /// answer is then this very buffer, neither encoded nor copied again.
    encoded: Option<Vec<u8>>,
}

impl Context {
    /// Wraps a signature context (for tests of a handler).
    pub fn new(inner: signature::Context) -> Self {
        Self { inner: UnsafeCell::new(inner), ..Self::default() }
    }

    /// The signature context inside.
    pub fn into_inner(mut self) -> signature::Context {
        self.forget_encoding();
        std::mem::take(self.inner_mut())
    }

    /// The request.
    pub fn request(&mut self) -> &mut Request {
        self.forget_encoding();
        &mut self.inner_mut().request
    }

    /// The response built so far.
    pub fn response(&mut self) -> &mut Response {
        self.forget_encoding();
        // The response is always decoded: no need to decode the request.
        &mut self.inner.get_mut().response
    }

    /// The context, with its request decoded.
    fn inner(&self) -> &signature::Context {
        self.decode_pending_request();
        // SAFETY: the request is decoded (the flag is clear), and nothing
        // writes through `inner` while the flag is clear and `self` is
        // shared (see the invariant on `inner`).
        unsafe { &*self.inner.get() }
    }

    /// The context, with its request decoded, for writing.
    fn inner_mut(&mut self) -> &mut signature::Context {
        self.decode_pending_request();
        self.inner.get_mut()
    }

    /// Decodes the pending request, if there is one. A request that does not
    /// decode is left as the default one; the run then fails with the reason
    /// (see `request_error`).
    fn decode_pending_request(&self) {
        if !self.request_pending.replace(false) {
            return;
        }
        // SAFETY: the flag was set, so no reference into `inner` exists (see
        // the invariant on `inner`); this one ends within this function.
        let request = unsafe { &mut (*self.inner.get()).request };
        let (decoded, kept) = decode_request(request, self.raw_request.take());
        if let Some(raw) = kept {
            self.raw_request.set(raw);
        }
        if let Err(err) = decoded {
            *request = Request::default();
            self.request_error.set(Some(format!("the guest could not decode its input: {err}")));
        }
    }

    /// Takes the run's input: the response decoded, the request kept
    /// encoded until it is looked at.
    fn load(&mut self, input: &[u8]) -> Result<(), signature::DecodeError> {
        self.request_error.set(None);
        match signature::raw::EncodedContext::new(input).parts() {
            Some((request, response)) => {
                let inner = self.inner.get_mut();
                // The last run's request goes now, under `&mut self`: the
                // lazy decode, which runs under `&self`, then drops nothing
                // of the handler's (whose `Drop` could reach this context).
                // A request still pending was never decoded since the last
                // reset, so it holds nothing to drop.
                if !self.request_pending.get() {
                    inner.request.reset();
                }
                let raw = self.raw_request.get_mut();
                raw.clear();
                signature::raw::chunked_copy::extend(raw, request);
                self.request_pending.set(true);
                signature::raw::decode_response_in_place(&mut inner.response, response)
            }
            None => {
                self.request_pending.set(false);
                self.inner.get_mut().decode_in_place(input)
            }
        }
    }

    /// Appends the encoding of a successful run result holding this
    /// context to `buf`: with the request's own bytes when it was never
    /// decoded.
    fn encode_as_result_into(&self, buf: &mut Vec<u8>) {
        if self.request_pending.get() {
            // SAFETY: only the response is read, which is never stale, and
            // nothing writes through `inner` while `self` is shared except
            // `decode_pending_request`, which is not running.
            let response = unsafe { &(*self.inner.get()).response };
            let raw = self.raw_request.take();
            signature::raw::EncodedContext::encode_parts_as_result_into(&raw, response, buf);
            self.raw_request.set(raw);
        } else {
            signature::raw::encode_context_result_into(self.inner(), buf);
        }
    }

    /// Drops the kept encoding: `inner` may be about to change.
    fn forget_encoding(&mut self) {
        if let Some(buffer) = self.encoded.take() {
            scale_guest_abi::return_request_buffer(buffer);
        }
    }

    /// Appends the run's answer to `output`: this context, or the error
    /// that stopped its request from decoding.
    fn encode_result_into(&mut self, output: &mut Vec<u8>) {
        if let Some(message) = self.request_error.take() {
            signature::raw::encode_error_result_into(&message, output);
            return;
        }
        match self.encoded.take() {
            // The kept result becomes the output buffer, and the output's
            // allocation serves the next `next`.
            Some(mut encoded) if output.is_empty() => {
                std::mem::swap(output, &mut encoded);
                scale_guest_abi::return_request_buffer(encoded);
            }
            Some(encoded) => {
                signature::raw::chunked_copy::extend(output, &encoded);
                scale_guest_abi::return_request_buffer(encoded);
            }
            None => self.encode_as_result_into(output),
        }
    }

    /// Runs the rest of the chain on this context and replaces it with what
    /// comes back.
    ///
    /// # Errors
    ///
    /// The error of whatever failed further down: a later function's error
    /// or panic, or a native handler's error, with its message. On error the
    /// context is left as it was before the call.
    // `next` is the name of this step in every Scale SDK; it is no iterator.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<(), Error> {
        if let Some(message) = self.request_error.take() {
            self.request_error.set(Some(message.clone()));
            return Err(Error::from(message));
        }
        #[cfg(not(target_family = "wasm"))]
        if let Some(outcome) = testing::call_fake_next(self) {
            return outcome;
        }
        // The context is encoded as a run result, so that if it comes back
        // unchanged the buffer is the run's answer as it is. A context given
        // back unchanged by an earlier `next` is sent as is.
        let request = match self.encoded.take() {
            Some(encoded) => encoded,
            None => {
                let mut request = scale_guest_abi::take_request_buffer();
                self.encode_as_result_into(&mut request);
                request
            }
        };
        let context = signature::raw::EncodedContext::of_result(&request)
            .expect("a result encoded here holds one context")
            .as_bytes();
        // The answer is decoded into a context of its own, which trades places
        // with this one on success: a warm guest allocates little.
        let mut decoded = ANSWER_CONTEXT.take().unwrap_or_default();
        let answer = scale_guest_abi::next(context, |answer| match answer {
            // The chain ended with no native handlers: this context is the answer.
            scale_guest_abi::Answer::Unchanged => Ok(NextOutcome::Unchanged),
            scale_guest_abi::Answer::Result(bytes) => {
                signature::RunResult::decode_into(signature::raw::chunked_copy::ChunkedSlice(bytes), &mut decoded).map(
                    |error| match error {
                        None => NextOutcome::Decoded,
                        Some(message) => NextOutcome::Failed(message),
                    },
                )
            }
        });
        let unchanged = matches!(answer, Ok(Ok(NextOutcome::Unchanged)));
        let outcome = match answer {
            Ok(Ok(NextOutcome::Unchanged)) => Ok(()),
            Ok(Ok(NextOutcome::Decoded)) => {
                // Every field comes from the answer, the request included.
                std::mem::swap(self.inner.get_mut(), &mut decoded);
                self.request_pending.set(false);
                Ok(())
            }
            Ok(Ok(NextOutcome::Failed(message))) => Err(Error::from(message)),
            Ok(Err(decode)) => Err(Error::new(format_args!("next: the host's answer is malformed: {decode}"))),
            Err(abi) => Err(Error::new(abi)),
        };
        if unchanged {
            // What was sent is this context's encoding: keep it for the answer.
            self.encoded = Some(request);
        } else {
            scale_guest_abi::return_request_buffer(request);
        }
        ANSWER_CONTEXT.set(Some(decoded));
        outcome
    }
}

/// Unit tests of a function, natively, with a stand-in for the rest of the
/// chain.
///
/// A handler that calls [`Context::next`] needs something after it. Natively
/// there is no host, so `next` fails with "next: not running inside a Scale
/// host", unless a test sets a fake: a closure that plays the rest of the
/// chain (the next functions and the host's handlers).
///
/// ```
/// use scale_guest::testing::fake_next;
/// use scale_guest::{Context, Error};
///
/// /// Adds a header to whatever the rest of the chain answers.
/// fn tag(ctx: &mut Context) -> Result<(), Error> {
///     ctx.next()?;
///     ctx.response().headers_mut().set("x-tagged", ["yes"]);
///     Ok(())
/// }
///
/// let _next = fake_next(|ctx: &mut Context| {
///     let name = ctx.request().body_str().unwrap_or("").to_owned();
///     ctx.response().set_body_string(format!("hello {name}"));
///     Ok(())
/// });
/// let mut ctx = Context::default();
/// ctx.request().set_body_string("Ada");
/// tag(&mut ctx).unwrap();
/// assert_eq!(ctx.response().body_str(), Some("hello Ada"));
/// assert_eq!(ctx.response().headers().first("x-tagged"), Some("yes"));
///
/// // The rest of the chain failing:
/// let _next = fake_next(|_: &mut Context| Err(Error::from("the database is down")));
/// assert_eq!(tag(&mut Context::default()).unwrap_err().message(), "the database is down");
/// ```
#[cfg(not(target_family = "wasm"))]
pub mod testing {
    use std::cell::RefCell;
    use std::marker::PhantomData;

    use crate::{Context, Error};

    type Next = Box<dyn FnMut(&mut Context) -> Result<(), Error>>;

    thread_local! {
        static FAKE_NEXT: RefCell<Option<Next>> = const { RefCell::new(None) };
    }

    /// Makes [`Context::next`] on this thread call `next` instead of failing,
    /// until the returned guard drops (a later `fake_next` replaces it until
    /// then).
    ///
    /// As with a host, `next` works on a copy of the context: on `Ok`, the
    /// copy replaces the caller's context; on `Err`, the caller's context is
    /// left as it was and its `next` returns the error. A `next` inside the
    /// fake fails as if there were no host.
    #[must_use = "the fake is removed when the guard drops"]
    pub fn fake_next<F>(next: F) -> FakeNext
    where
        F: FnMut(&mut Context) -> Result<(), Error> + 'static,
    {
        let previous = FAKE_NEXT.with(|slot| slot.replace(Some(Box::new(next))));
        FakeNext { previous, _this_thread: PhantomData }
    }

    /// Keeps a fake `next` set; dropping it puts back the one before it
    /// (none, at first).
    pub struct FakeNext {
        previous: Option<Next>,
        /// The fake belongs to the thread that set it.
        _this_thread: PhantomData<*const ()>,
    }

    impl std::fmt::Debug for FakeNext {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("FakeNext").finish_non_exhaustive()
        }
    }

    impl Drop for FakeNext {
        fn drop(&mut self) {
            let previous = self.previous.take();
            FAKE_NEXT.with(|slot| *slot.borrow_mut() = previous);
        }
    }

    /// Runs this thread's fake `next` on a copy of `ctx`, if one is set.
    pub(crate) fn call_fake_next(ctx: &mut Context) -> Option<Result<(), Error>> {
        // Taken out while it runs, so a `next` inside it finds none.
        let mut next = FAKE_NEXT.with(|slot| slot.borrow_mut().take())?;
        let mut copy = Context::new(ctx.inner().clone());
        let outcome = next(&mut copy);
        FAKE_NEXT.with(|slot| {
            let mut slot = slot.borrow_mut();
            // A fake set while this one ran wins.
            if slot.is_none() {
                *slot = Some(next);
            }
        });
        if outcome.is_ok() {
            ctx.forget_encoding();
            *ctx.inner_mut() = copy.into_inner();
        }
        Some(outcome)
    }
}

/// What the rest of the chain made of the context a `next` sent, once the
/// host's answer ([`scale_guest_abi::Answer`]) is decoded.
enum NextOutcome {
    /// The context that was sent, unchanged.
    Unchanged,
    /// A changed context, decoded into `ANSWER_CONTEXT`'s context.
    Decoded,
    /// The error message of whatever failed further down.
    Failed(String),
}

/// Decodes `raw` into `request`, and gives back the buffer when the request
/// does not keep it. A large body becomes a view of `raw` (which the request
/// then owns, so the next run's request gets a new buffer); a small one is
/// copied, so that it does not keep a large encoding of mostly headers.
fn decode_request(request: &mut Request, raw: Vec<u8>) -> (Result<(), signature::DecodeError>, Option<Vec<u8>>) {
    if raw.len() < SHARE_REQUEST_FROM {
        let decoded = signature::raw::decode_request_in_place(request, &raw);
        return (decoded, Some(raw));
    }
    let raw = signature::Bytes::from(raw);
    let decoded = signature::raw::decode_request_in_place_shared(request, raw.clone());
    if request.body.len() >= SHARE_REQUEST_FROM {
        return (decoded, None);
    }
    request.body = signature::Bytes::copy_from_slice(&request.body);
    (decoded, raw.try_into_mut().ok().map(Vec::from))
}

/// From this size on, a decoded request's body shares the request's raw
/// bytes instead of copying them: the copy then costs more than the new
/// buffer the next request needs.
const SHARE_REQUEST_FROM: usize = 8 * 1024;

std::thread_local! {
    /// The context `next` decodes into. (WebAssembly guests have one thread;
    /// natively, each thread has its own.)
    static ANSWER_CONTEXT: std::cell::Cell<Option<signature::Context>> = const { std::cell::Cell::new(None) };
}

impl Deref for Context {
    type Target = signature::Context;

    fn deref(&self) -> &Self::Target {
        self.inner()
    }
}

impl DerefMut for Context {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.forget_encoding();
        self.inner_mut()
    }
}

impl From<signature::Context> for Context {
    fn from(inner: signature::Context) -> Self {
        Self::new(inner)
    }
}

// The kept encodings are caches of `inner`: copies, comparisons and debug
// output go by the decoded context alone.
impl Clone for Context {
    fn clone(&self) -> Self {
        Self::new(self.inner().clone())
    }
}

impl PartialEq for Context {
    fn eq(&self, other: &Self) -> bool {
        self.inner() == other.inner()
    }
}

impl Eq for Context {}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context").field("inner", self.inner()).finish()
    }
}

/// An error a Scale function returns: a message that becomes the host's error.
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
}

impl Error {
    /// An error with the given message.
    pub fn new(message: impl fmt::Display) -> Self {
        Self { message: message.to_string() }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.message, f)
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Self { message }
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Self { message: message.to_owned() }
    }
}

impl From<signature::InvalidStatusCode> for Error {
    fn from(err: signature::InvalidStatusCode) -> Self {
        Self::new(err)
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Self::new(err)
    }
}

#[doc(hidden)]
pub mod __private {
    pub use scale_guest_abi;
    pub use std::vec::Vec;

    use super::{Context, signature};
    use std::fmt::Display;

    std::thread_local! {
        /// The context of the last run, decoded into again by the next one so
        /// that its allocations are reused.
        static CONTEXT: std::cell::Cell<Option<Context>> = const { std::cell::Cell::new(None) };
    }

    /// Decodes a run's input, calls the handler, encodes its outcome.
    pub fn run<E: Display>(input: &[u8], output: &mut Vec<u8>, handler: fn(&mut Context) -> Result<(), E>) {
        install_panic_hook();
        let mut ctx = CONTEXT.take().unwrap_or_default();
        ctx.forget_encoding();
        match ctx.load(input) {
            Ok(()) => match handler(&mut ctx) {
                // A request that did not decode is reported first.
                Err(err) if ctx.request_error.get_mut().is_none() => {
                    signature::raw::encode_error_result_into(&err.to_string(), output);
                }
                _ => ctx.encode_result_into(output),
            },
            Err(err) => {
                let message = format!("the guest could not decode its input: {err}");
                signature::raw::encode_error_result_into(&message, output);
            }
        }
        CONTEXT.set(Some(ctx));
    }

    /// Reports panics to the host before the guest traps (WebAssembly
    /// guests abort on panic, so the message would otherwise be lost).
    fn install_panic_hook() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                let message = match info.payload().downcast_ref::<&str>() {
                    Some(text) => (*text).to_owned(),
                    None => match info.payload().downcast_ref::<String>() {
                        Some(text) => text.clone(),
                        None => String::from("Box<dyn Any>"),
                    },
                };
                let message = match info.location() {
                    Some(at) => format!("{message} (at {}:{})", at.file(), at.line()),
                    None => message,
                };
                scale_guest_abi::report_panic(&message);
                previous(info);
            }));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(ctx: &mut Context) -> Result<(), Error> {
        ctx.response().set_body_string("hello");
        ctx.response().set_status_code(202)?;
        Ok(())
    }

    fn fails(_: &mut Context) -> Result<(), String> {
        Err("it failed".into())
    }

    #[test]
    fn run_encodes_the_handlers_context() {
        let mut output = Vec::new();
        __private::run(&signature::Context::default().encode_to_vec(), &mut output, hello);
        let result = signature::RunResult::decode(&output[..]).unwrap();
        let signature::RunResult::Context(ctx) = result else { panic!("{result:?}") };
        assert_eq!(ctx.response.body_str(), Some("hello"));
        assert_eq!(ctx.response.status_code, 202);
    }

    #[test]
    fn run_encodes_the_handlers_error() {
        let mut output = Vec::new();
        __private::run(&signature::Context::default().encode_to_vec(), &mut output, fails);
        assert_eq!(signature::RunResult::decode(&output[..]).unwrap(), signature::RunResult::Error("it failed".into()));
    }

    #[test]
    fn run_reports_undecodable_input_as_an_error() {
        let mut output = Vec::new();
        __private::run(&[0xff, 0xff], &mut output, hello);
        let result = signature::RunResult::decode(&output[..]).unwrap();
        assert!(
            matches!(result, signature::RunResult::Error(ref message) if message.contains("could not decode")),
            "{result:?}"
        );
    }

    #[test]
    fn next_without_a_host_is_an_error_and_leaves_the_context() {
        let mut ctx = Context::default();
        ctx.response().set_body_string("kept");
        let err = ctx.next().unwrap_err();
        assert!(err.message().contains("not running inside a Scale host"), "{err}");
        assert_eq!(ctx.response().body_str(), Some("kept"));
    }

    #[test]
    fn a_fake_next_plays_the_rest_of_the_chain_on_a_copy() {
        let calls = std::rc::Rc::new(Cell::new(0));
        let counted = std::rc::Rc::clone(&calls);
        let next = testing::fake_next(move |ctx: &mut Context| {
            counted.set(counted.get() + 1);
            assert_eq!(ctx.request().body_str(), Some("sent"));
            assert_eq!(ctx.response().body_str(), Some("so far"));
            ctx.response().set_body_string("answered");
            ctx.request().set_body_string("changed downstream");
            // Inside the fake there is no further chain.
            assert!(ctx.next().unwrap_err().message().contains("not running inside a Scale host"));
            if ctx.request().headers().first("x-fail").is_some() { Err(Error::from("down")) } else { Ok(()) }
        });
        let mut ctx = Context::default();
        ctx.request().set_body_string("sent");
        ctx.response().set_body_string("so far");
        ctx.next().unwrap();
        assert_eq!(ctx.response().body_str(), Some("answered"));
        assert_eq!(ctx.request().body_str(), Some("changed downstream"));

        let mut failing = Context::default();
        failing.request().set_body_string("sent");
        failing.request().headers_mut().set("x-fail", ["1"]);
        failing.response().set_body_string("so far");
        assert_eq!(failing.next().unwrap_err().message(), "down");
        assert_eq!(failing.response().body_str(), Some("so far"), "an error leaves the context as it was");
        assert_eq!(calls.get(), 2);

        drop(next);
        assert!(Context::default().next().unwrap_err().message().contains("not running inside a Scale host"));
    }

    /// A context as `next` leaves it when the host gave it back unchanged.
    fn kept_after_next() -> Context {
        let mut ctx = Context::default();
        ctx.response().set_body_string("sent to next");
        let mut encoded = Vec::new();
        signature::raw::encode_context_result_into(ctx.inner(), &mut encoded);
        ctx.encoded = Some(encoded);
        ctx
    }

    fn result_of(ctx: &mut Context) -> signature::Context {
        let mut output = Vec::new();
        ctx.encode_result_into(&mut output);
        signature::RunResult::decode(&output[..]).unwrap().into_result().unwrap()
    }

    #[test]
    fn an_untouched_context_answers_with_the_bytes_it_sent() {
        let mut ctx = kept_after_next();
        let kept = ctx.encoded.clone().unwrap();
        let sent = signature::raw::EncodedContext::of_result(&kept).unwrap();
        let mut output = Vec::new();
        ctx.encode_result_into(&mut output);
        assert!(sent.is_context_of(&output));
        // Also into an output that already holds something.
        let mut ctx = kept_after_next();
        let mut output = b"before".to_vec();
        ctx.encode_result_into(&mut output);
        assert_eq!(output, [&b"before"[..], &kept].concat());
        // Reading does not drop the kept bytes.
        let ctx = kept_after_next();
        assert_eq!(ctx.response.body_str(), Some("sent to next"));
        assert!(ctx.encoded.is_some());
    }

    #[test]
    fn every_way_of_changing_the_context_drops_the_kept_bytes() {
        let mut ctx = kept_after_next();
        ctx.response().set_body_string("after next");
        assert_eq!(result_of(&mut ctx).response.body_str(), Some("after next"));

        let mut ctx = kept_after_next();
        ctx.request().set_uri("/after");
        assert_eq!(result_of(&mut ctx).request.uri, "/after");

        let mut ctx = kept_after_next();
        ctx.response.set_body_string("through DerefMut");
        assert_eq!(result_of(&mut ctx).response.body_str(), Some("through DerefMut"));

        let ctx = kept_after_next();
        assert!(ctx.clone().encoded.is_none());
        assert_eq!(ctx.clone(), ctx);
    }

    /// A context with a request worth decoding.
    fn sent_context() -> signature::Context {
        let mut sent = signature::Context::default();
        sent.request.method = "POST".into();
        sent.request.uri = "/lazy?x=1".into();
        sent.request.set_body("request body");
        sent.request.headers_mut().set("x-one", ["1", "2"]);
        sent.response.headers_mut().set("x-earlier", ["kept"]);
        sent
    }

    fn run_result(input: &[u8], handler: fn(&mut Context) -> Result<(), Error>) -> signature::RunResult {
        let mut output = Vec::new();
        __private::run(input, &mut output, handler);
        signature::RunResult::decode(&output[..]).unwrap()
    }

    #[test]
    fn a_handler_that_only_writes_the_response_hands_the_request_on_as_it_came() {
        fn respond(ctx: &mut Context) -> Result<(), Error> {
            ctx.response().set_body_string("answered");
            Ok(())
        }
        let sent = sent_context();
        let input = sent.encode_to_vec();
        let mut output = Vec::new();
        __private::run(&input, &mut output, respond);
        let mut expected = sent.clone();
        expected.response.set_body_string("answered");
        assert_eq!(signature::RunResult::decode(&output[..]).unwrap(), signature::RunResult::Context(expected));
        // The request's bytes are the ones sent.
        let (sent_request, _) = signature::raw::EncodedContext::new(&input).parts().unwrap();
        let result = signature::RunResult::decode(&output[..]).unwrap().into_result().unwrap().encode_to_vec();
        assert_eq!(signature::raw::EncodedContext::new(&result).parts().unwrap().0, sent_request);
    }

    #[test]
    fn large_requests_decode_whichever_way_they_are_reached() {
        fn echo_through_deref(ctx: &mut Context) -> Result<(), Error> {
            let body = ctx.request.body.clone();
            ctx.response().set_body(body);
            Ok(())
        }
        fn echo_through_request(ctx: &mut Context) -> Result<(), Error> {
            let body = ctx.request().body.clone();
            ctx.response().set_body(body);
            Ok(())
        }
        fn untouched(ctx: &mut Context) -> Result<(), Error> {
            ctx.response().set_body_string("untouched");
            Ok(())
        }
        // Sizes on both sides of the size from which the body shares the
        // request's bytes, each body different, so that a body left over
        // from an earlier run would show.
        let handlers = [echo_through_deref as fn(&mut Context) -> Result<(), Error>, echo_through_request, untouched];
        for (round, len) in
            [100, SHARE_REQUEST_FROM - 64, SHARE_REQUEST_FROM, 5 * SHARE_REQUEST_FROM].iter().enumerate()
        {
            for (which, handler) in handlers.iter().enumerate() {
                let mut sent = sent_context();
                let body: Vec<u8> = (0..*len).map(|i| (i * 7 + round * 3 + which) as u8).collect();
                sent.request.set_body(body.clone());
                let signature::RunResult::Context(got) = run_result(&sent.encode_to_vec(), *handler) else {
                    panic!("the run failed")
                };
                assert_eq!(got.request, sent.request, "{len} bytes, handler {which}");
                let expected = if which == 2 { &b"untouched"[..] } else { &body[..] };
                assert_eq!(got.response.body(), expected, "{len} bytes, handler {which}");
            }
        }
    }

    #[test]
    fn a_large_request_lends_its_bytes_only_to_a_large_body() {
        // A large body: the request's bytes become the body's.
        let mut sent = sent_context();
        sent.request.set_body(vec![7; 2 * SHARE_REQUEST_FROM]);
        let mut ctx = Context::default();
        ctx.load(&sent.encode_to_vec()).unwrap();
        assert_eq!(ctx.request, sent.request);
        assert_eq!(ctx.raw_request.take().capacity(), 0, "the bytes went to the body");

        // Mostly headers and a small body: the body is copied and the
        // buffer stays for the next run.
        let mut sent = sent_context();
        sent.request.headers_mut().set("x-large", ["v".repeat(2 * SHARE_REQUEST_FROM)]);
        sent.request.set_body("small");
        let mut ctx = Context::default();
        ctx.load(&sent.encode_to_vec()).unwrap();
        assert_eq!(ctx.request, sent.request);
        let raw = ctx.raw_request.take();
        assert!(raw.capacity() >= 2 * SHARE_REQUEST_FROM, "the buffer is kept");
        assert!(!raw.as_ptr_range().contains(&ctx.request.body.as_ptr()), "the body is a copy");
    }

    #[test]
    fn the_request_is_decoded_when_looked_at() {
        fn read_through_deref(ctx: &mut Context) -> Result<(), Error> {
            let uri = ctx.request.uri.clone();
            ctx.response().set_body_string(uri);
            Ok(())
        }
        fn change_it(ctx: &mut Context) -> Result<(), Error> {
            let first = ctx.request().headers().first("x-one").unwrap_or("none").to_owned();
            ctx.request().set_uri("/changed");
            ctx.response().set_body_string(first);
            Ok(())
        }
        // Twice each, so that the second run reuses the first one's context.
        for _ in 0..2 {
            let sent = sent_context();
            let signature::RunResult::Context(got) = run_result(&sent.encode_to_vec(), read_through_deref) else {
                panic!("the run failed")
            };
            assert_eq!(got.response.body_str(), Some("/lazy?x=1"));
            assert_eq!(got.request, sent.request);
            let signature::RunResult::Context(got) = run_result(&sent.encode_to_vec(), change_it) else {
                panic!("the run failed")
            };
            assert_eq!(got.response.body_str(), Some("1"));
            assert_eq!(got.request.uri, "/changed");
            assert_eq!(got.request.method, "POST");
        }
    }

    #[test]
    fn a_request_that_does_not_decode_fails_the_run_once_looked_at() {
        fn look(ctx: &mut Context) -> Result<(), Error> {
            let _ = ctx.request.method.len();
            Ok(())
        }
        fn look_then_fail(ctx: &mut Context) -> Result<(), Error> {
            let _ = ctx.request().uri.len();
            Err(Error::from("the handler's own error"))
        }
        // A request field whose string is not UTF-8, inside a well-formed context.
        let response = signature::Response::default();
        let mut input = Vec::new();
        signature::raw::EncodedContext::encode_parts_into(&[0x0a, 0x01, 0xff], &response, &mut input);
        for handler in [look as fn(&mut Context) -> Result<(), Error>, look_then_fail] {
            let result = run_result(&input, handler);
            assert!(
                matches!(result, signature::RunResult::Error(ref message) if message.contains("could not decode")),
                "{result:?}"
            );
        }
        // The next run, with a valid input, is unaffected.
        assert!(matches!(run_result(&sent_context().encode_to_vec(), look), signature::RunResult::Context(_)));
    }

    #[test]
    fn status_errors_convert_with_question_mark() {
        fn bad(ctx: &mut Context) -> Result<(), Error> {
            ctx.response().set_status_code(42)?;
            Ok(())
        }
        let err = bad(&mut Context::default()).unwrap_err();
        assert!(err.message().contains("42"), "{err}");
    }
}
