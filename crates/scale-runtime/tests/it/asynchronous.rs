//! Async native handlers and `Instance::run_async`, driven by a small
//! executor of the standard library's (tokio's runtimes are covered by
//! scale-http's tests).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use scale_runtime::{Context, Error, HandlerError, Runtime};

use crate::common::{Lang, builder, fixture, panics_the_first_time, runtime};

/// Polls `future` on this thread until it is ready, sleeping in between.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = TaskContext::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return value;
        }
        std::thread::park();
    }
}

/// A timer: ready `after` it is first polled, woken by a thread of its own.
struct Sleep {
    after: Duration,
    state: Option<Arc<Mutex<Alarm>>>,
}

/// Whether a [`Sleep`] has rung, and whom to wake when it does.
type Alarm = (bool, Option<Waker>);

fn sleep(after: Duration) -> Sleep {
    Sleep { after, state: None }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        let after = self.after;
        let state = self.state.get_or_insert_with(|| {
            let state: Arc<Mutex<Alarm>> = Arc::default();
            let timer = Arc::clone(&state);
            std::thread::spawn(move || {
                std::thread::sleep(after);
                let mut state = timer.lock().unwrap();
                state.0 = true;
                if let Some(waker) = state.1.take() {
                    waker.wake();
                }
            });
            state
        });
        let mut state = state.lock().unwrap();
        if state.0 {
            return Poll::Ready(());
        }
        state.1 = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// An async handler that waits `after`, then appends `suffix` to the body.
fn append_later(suffix: &'static str, after: Duration) -> impl FnMut(Context) -> AppendLater + Send + 'static {
    move |ctx| {
        Box::pin(async move {
            sleep(after).await;
            let mut ctx = ctx;
            let mut body = ctx.response.body.to_vec();
            body.extend_from_slice(suffix.as_bytes());
            ctx.response.set_body(body);
            Ok(ctx)
        })
    }
}

type AppendLater = Pin<Box<dyn Future<Output = Result<Context, HandlerError>> + Send>>;

fn body(instance: &scale_runtime::Instance) -> &str {
    instance.context().response.body_str().expect("UTF-8 body")
}

/// A chain of two guests (Go, then Rust), each appending "-modified" after
/// `next`: a handler runs nested two guests deep.
fn two_deep() -> Runtime {
    builder().function(fixture(Lang::Go, "http-next")).function(fixture(Lang::Rust, "http-next")).build().unwrap()
}

#[test]
fn run_async_awaits_an_async_handler_two_guests_deep() {
    let runtime = two_deep();
    let mut instance = runtime
        .instance()
        .unwrap()
        .with_handler(|ctx| {
            let mut body = ctx.response.body.to_vec();
            body.extend_from_slice(b"-sync");
            ctx.response.set_body(body);
            Ok(())
        })
        .with_async_handler(append_later("-async", Duration::from_millis(5)));
    for _ in 0..3 {
        instance.context_mut().response.set_body_string("Test Data");
        block_on(instance.run_async()).unwrap();
        assert_eq!(body(&instance), "Test Data-modified-modified-sync-async");
    }
    // The same instance runs synchronously too; the handler's future is
    // polled on this thread.
    instance.context_mut().response.set_body_string("Test Data");
    instance.run().unwrap();
    assert_eq!(body(&instance), "Test Data-modified-modified-sync-async");
    drop(instance);
    let stats = runtime.pool_stats();
    assert_eq!(stats.discarded, 0, "{stats:?}");
}

#[test]
fn run_async_without_async_handlers_is_run_elsewhere() {
    for lang in Lang::ALL {
        let mut instance = runtime(lang, &["http-next"]).instance().unwrap().with_handler(|ctx| {
            ctx.response.headers_mut().set("x-thread", [std::thread::current().name().unwrap_or("-")]);
            Ok(())
        });
        block_on(instance.run_async()).unwrap();
        assert_eq!(instance.context().response.headers().get("x-thread"), Some(&["scale-run".to_string()][..]));
    }
}

#[test]
fn an_async_handlers_error_comes_back_like_a_sync_ones() {
    for lang in Lang::ALL {
        let mut instance = runtime(lang, &["next"])
            .instance()
            .unwrap()
            .with_async_handler(|_ctx: Context| async { Err(HandlerError::from("no database")) });
        let err = block_on(instance.run_async()).unwrap_err();
        assert!(matches!(&err, Error::Handler { index: 0, source } if source.to_string() == "no database"), "{err}");
    }
}

#[test]
fn a_deadline_ends_a_run_whose_async_handler_never_answers() {
    for lang in Lang::ALL {
        let runtime = builder().deadline(Duration::from_millis(100)).function(fixture(lang, "next")).build().unwrap();
        let dropped = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&dropped);
        let mut instance = runtime.instance().unwrap().with_async_handler(move |_ctx: Context| {
            let guard = DropFlag(Arc::clone(&seen));
            async move {
                let _guard = guard;
                std::future::pending::<Result<Context, HandlerError>>().await
            }
        });
        let err = block_on(instance.run_async()).unwrap_err();
        assert!(matches!(&err, Error::Deadline { function, .. } if function == "next"), "{lang:?}: {err:?}");
        assert!(dropped.load(Ordering::SeqCst), "{lang:?}: the handler's future is dropped");
        // Synchronously as well.
        let err = instance.run().unwrap_err();
        assert!(matches!(&err, Error::Deadline { .. }), "{lang:?}: {err:?}");
        // The runtime keeps serving.
        let mut fresh = runtime.instance().unwrap();
        block_on(fresh.run_async()).unwrap();
    }
}

struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn dropping_run_async_abandons_the_run_and_discards_its_guests() {
    let runtime = two_deep();
    let entered = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicBool::new(false));
    let (seen_entry, seen_drop) = (Arc::clone(&entered), Arc::clone(&dropped));
    let mut instance = runtime.instance().unwrap().with_async_handler(move |_ctx: Context| {
        seen_entry.store(true, Ordering::SeqCst);
        let guard = DropFlag(Arc::clone(&seen_drop));
        async move {
            let _guard = guard;
            std::future::pending::<Result<Context, HandlerError>>().await
        }
    });
    let discarded = runtime.pool_stats().discarded;
    {
        let mut run = instance.run_async();
        let mut cx = TaskContext::from_waker(Waker::noop());
        let started = Instant::now();
        // Until the handler has been called and its future handed over.
        while !entered.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(10) {
            assert!(Pin::new(&mut run).poll(&mut cx).is_pending());
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(entered.load(Ordering::SeqCst), "the handler is called");
        std::thread::sleep(Duration::from_millis(10));
        assert!(Pin::new(&mut run).poll(&mut cx).is_pending());
    }
    assert!(dropped.load(Ordering::SeqCst), "the handler's future is dropped with the run");
    // Both guests stopped halfway: discarded, not pooled.
    let started = Instant::now();
    while runtime.pool_stats().discarded < discarded + 2 && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let stats = runtime.pool_stats();
    assert_eq!(stats.discarded, discarded + 2, "{stats:?}");
    // The instance has no chain left; the runtime serves on.
    assert!(matches!(instance.run(), Err(Error::Abandoned)));
    assert!(matches!(block_on(instance.run_async()), Err(Error::Abandoned)));
    assert_eq!(instance.context().response.status_code, 200);
    let mut fresh = runtime.instance().unwrap().with_handler(|_| Ok(()));
    fresh.context_mut().response.set_body_string("Test Data");
    block_on(fresh.run_async()).unwrap();
    assert_eq!(body(&fresh), "Test Data-modified-modified");
}

#[test]
fn a_handlers_panic_under_run_async_reaches_the_awaiting_task() {
    for lang in Lang::ALL {
        let runtime = runtime(lang, &["next"]);
        let mut instance = runtime.instance().unwrap().with_handler(panics_the_first_time());
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| block_on(instance.run_async())));
        let payload = run.expect_err("the handler's panic reaches the task");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"the handler panicked"), "{lang:?}");
        block_on(instance.run_async()).unwrap_or_else(|err| panic!("{lang:?}: {err}"));
        assert_eq!(instance.context().response.body, &b"after the panic"[..], "{lang:?}");
    }
}

#[test]
fn the_cpu_budget_and_the_memory_limit_hold_under_run_async() {
    for lang in Lang::ALL {
        let runtime = builder().cpu_budget(50_000_000).function(fixture(lang, "loop")).build().unwrap();
        let err = block_on(runtime.instance().unwrap().run_async()).unwrap_err();
        assert!(matches!(err, Error::CpuBudget { .. }), "{lang:?}: {err:?}");

        let runtime = builder().memory_limit(48 << 20).function(fixture(lang, "memory-bomb")).build().unwrap();
        let err = block_on(runtime.instance().unwrap().run_async()).unwrap_err();
        assert!(matches!(err, Error::MemoryLimit { .. }), "{lang:?}: {err:?}");
    }
}
