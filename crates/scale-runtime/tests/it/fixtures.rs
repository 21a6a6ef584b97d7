//! The behaviour table, run for Go and Rust guests alike.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use scale_runtime::{Error, HandlerError, Instance, Runtime};

use crate::common::{Lang, builder, fixture, panics_the_first_time, runtime};

const TEST_DATA: &str = "Test Data";

/// One run of a fresh instance of `runtime` with the response body set to "Test Data".
fn run_with_body(instance: &mut Instance) -> Result<(), Error> {
    instance.context_mut().response.set_body_string(TEST_DATA);
    instance.run()
}

fn body(instance: &Instance) -> &str {
    instance.context().response.body_str().expect("UTF-8 body")
}

#[test]
fn passthrough_returns_the_hosts_body_unchanged() {
    for lang in Lang::ALL {
        let mut instance = runtime(lang, &["passthrough"]).instance().unwrap();
        run_with_body(&mut instance).unwrap();
        assert_eq!(body(&instance), TEST_DATA, "{lang:?}");
        assert_eq!(instance.context().response.status_code, 200, "{lang:?}");
    }
}

#[test]
fn modify_sets_the_body() {
    for lang in Lang::ALL {
        let mut instance = runtime(lang, &["modify"]).instance().unwrap();
        run_with_body(&mut instance).unwrap();
        assert_eq!(body(&instance), "modified", "{lang:?}");
    }
}

#[test]
fn next_runs_the_native_handler_whose_value_wins() {
    for lang in Lang::ALL {
        let mut instance = runtime(lang, &["next"]).instance().unwrap().with_handler(|ctx| {
            ctx.response.set_body_string("from the handler");
            Ok(())
        });
        run_with_body(&mut instance).unwrap();
        assert_eq!(body(&instance), "from the handler", "{lang:?}");
    }
}

#[test]
fn changes_after_an_unchanged_next_are_kept() {
    for lang in Lang::ALL {
        let runtime = runtime(lang, &["afternext"]);
        // Twice through one instance, then through a new one that reuses the
        // same guest: what a guest keeps from one run must not leak into the next.
        for round in 0..3 {
            let mut instance = runtime.instance().unwrap();
            run_with_body(&mut instance).unwrap();
            if round == 1 {
                run_with_body(&mut instance).unwrap();
            }
            assert_eq!(body(&instance), format!("{TEST_DATA}-after"), "{lang:?} round {round}");
            let after = instance.context().response.headers.first("x-after");
            assert_eq!(after, Some("yes"), "{lang:?} round {round}");
        }
        // Chained, the first one's `next` gets back a changed context.
        let mut instance = crate::common::runtime(lang, &["afternext", "afternext"]).instance().unwrap();
        run_with_body(&mut instance).unwrap();
        assert_eq!(body(&instance), format!("{TEST_DATA}-after-after"), "{lang:?}");
    }
}

#[test]
fn next_without_handlers_hands_the_context_back() {
    for lang in Lang::ALL {
        let mut instance = runtime(lang, &["next"]).instance().unwrap();
        run_with_body(&mut instance).unwrap();
        assert_eq!(body(&instance), TEST_DATA, "{lang:?}");
    }
}

#[test]
fn modifynext_lets_the_handler_see_the_guests_change() {
    for lang in Lang::ALL {
        let mut instance = runtime(lang, &["modifynext"]).instance().unwrap().with_handler(append("-next"));
        run_with_body(&mut instance).unwrap();
        assert_eq!(body(&instance), "modified-next", "{lang:?}");
    }
}

#[test]
fn handlers_run_in_order() {
    for lang in Lang::ALL {
        let mut instance =
            runtime(lang, &["next"]).instance().unwrap().with_handler(append("-one")).with_handler(append("-two"));
        run_with_body(&mut instance).unwrap();
        assert_eq!(body(&instance), "Test Data-one-two", "{lang:?}");
    }
}

fn append(suffix: &'static str) -> impl FnMut(&mut scale_runtime::Context) -> Result<(), HandlerError> + Send {
    move |ctx| {
        let mut body = ctx.response.body.to_vec();
        body.extend_from_slice(suffix.as_bytes());
        ctx.response.set_body(body);
        Ok(())
    }
}

#[test]
fn next_error_propagates_to_the_host() {
    for lang in Lang::ALL {
        let mut instance =
            runtime(lang, &["next"]).instance().unwrap().with_handler(|_| Err(HandlerError::from("next error")));
        let err = run_with_body(&mut instance).unwrap_err();
        assert!(err.to_string().contains("next error"), "{lang:?}: {err}");
        assert!(matches!(err, Error::Handler { index: 0, .. }), "{lang:?}: {err:?}");
        // The context is left as it was.
        assert_eq!(body(&instance), TEST_DATA, "{lang:?}");
    }
}

#[test]
fn a_handler_that_panics_panics_the_run_and_its_guest_is_replaced() {
    for lang in Lang::ALL {
        let runtime = runtime(lang, &["next"]);
        let mut instance = runtime.instance().unwrap().with_handler(panics_the_first_time());
        let discarded = runtime.pool_stats().discarded;
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| instance.run()));
        let payload = run.expect_err("the handler's panic reaches the caller");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"the handler panicked"), "{lang:?}");
        // The instance goes on, with a fresh guest and the same handlers.
        run_with_body(&mut instance).unwrap_or_else(|err| panic!("{lang:?}: {err}"));
        assert_eq!(body(&instance), "after the panic", "{lang:?}");
        drop(instance);
        let stats = runtime.pool_stats();
        assert_eq!(stats.discarded, discarded + 1, "{lang:?}: the guest stopped halfway was dropped: {stats:?}");
        // And the runtime goes on as well.
        let mut instance = runtime.instance().unwrap().with_handler(|_| Ok(()));
        run_with_body(&mut instance).unwrap_or_else(|err| panic!("{lang:?}: {err}"));
    }
}

#[test]
fn http_handler_appends_to_the_body() {
    for lang in Lang::ALL {
        let mut instance = runtime(lang, &["http-handler"]).instance().unwrap();
        run_with_body(&mut instance).unwrap();
        assert_eq!(body(&instance), "Test Data-modified", "{lang:?}");
    }
}

#[test]
fn http_next_appends_then_hands_on() {
    for lang in Lang::ALL {
        let mut instance = runtime(lang, &["http-next"]).instance().unwrap().with_handler(append("-next"));
        run_with_body(&mut instance).unwrap();
        assert_eq!(body(&instance), "Test Data-modified-next", "{lang:?}");
    }
}

#[test]
fn headers_set_by_the_guest_reach_the_host() {
    for lang in Lang::ALL {
        let mut instance = runtime(lang, &["headers"]).instance().unwrap();
        instance.context_mut().request.headers_mut().set("X-Test-Header", ["from the host"]);
        instance.run().unwrap();
        let headers = &instance.context().response.headers;
        assert_eq!(headers.get("x-response").unwrap(), ["from the host"], "{lang:?}");
        assert_eq!(headers.get("x-multi").unwrap(), ["a", "b"], "{lang:?}");
    }
}

#[test]
fn status_set_by_the_guest_reaches_the_host() {
    for lang in Lang::ALL {
        let mut instance = runtime(lang, &["status"]).instance().unwrap();
        instance.run().unwrap();
        assert_eq!(instance.context().response.status_code, 201, "{lang:?}");
    }
}

#[test]
fn a_one_mebibyte_body_round_trips() {
    let body: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    for lang in Lang::ALL {
        let mut instance = runtime(lang, &["large-body"]).instance().unwrap();
        for _ in 0..3 {
            instance.context_mut().request.set_body(body.clone());
            instance.context_mut().response.set_body_string("");
            instance.run().unwrap();
            assert!(instance.context().response.body == body, "{lang:?}");
        }
    }
}

#[test]
fn file_access_is_denied_inside_the_guest() {
    for lang in Lang::ALL {
        let mut instance = runtime(lang, &["file"]).instance().unwrap();
        let err = instance.run().unwrap_err();
        let Error::Guest { function, message } = &err else { panic!("{lang:?}: {err:?}") };
        assert_eq!(function, "file");
        assert!(!message.contains("was allowed"), "{lang:?}: {message}");
        assert!(!message.is_empty(), "{lang:?}");
    }
}

#[test]
fn network_access_is_denied_inside_the_guest() {
    let mut instance = runtime(Lang::Go, &["network"]).instance().unwrap();
    let err = instance.run().unwrap_err();
    let Error::Guest { message, .. } = &err else { panic!("{err:?}") };
    assert!(!message.contains("was allowed"), "{message}");
}

#[test]
fn a_guest_error_names_the_function() {
    for lang in Lang::ALL {
        let mut instance = runtime(lang, &["error"]).instance().unwrap();
        let err = instance.run().unwrap_err();
        assert!(
            matches!(&err, Error::Guest { function, message } if function == "error" && message == "guest error"),
            "{lang:?}: {err:?}"
        );
    }
}

#[test]
fn a_guest_error_keeps_the_instance() {
    for lang in Lang::ALL {
        let runtime = runtime(lang, &["error"]);
        let mut instance = runtime.instance().unwrap();
        for _ in 0..3 {
            assert!(matches!(instance.run(), Err(Error::Guest { .. })), "{lang:?}");
        }
        drop(instance);
        // A guest error is a normal outcome: nothing was discarded or re-made.
        let stats = runtime.pool_stats();
        assert_eq!((stats.created, stats.discarded, stats.idle), (1, 0, 1), "{lang:?}: {stats:?}");
    }
}

fn runtime_of(lang: Lang, name: &str) -> Runtime {
    runtime(lang, &[name])
}

#[test]
fn a_panic_is_reported_and_the_next_run_succeeds() {
    for lang in Lang::ALL {
        let runtime =
            builder().function(fixture(lang, "panic")).function(fixture(lang, "passthrough")).build().unwrap();
        let mut instance = runtime.instance().unwrap();
        let err = instance.run().unwrap_err();
        let Error::Panic { function, message } = &err else { panic!("{lang:?}: {err:?}") };
        assert_eq!(function, "panic", "{lang:?}");
        assert!(message.contains("guest panic"), "{lang:?}: {message}");
        // The poisoned instance is replaced, and the runtime keeps serving.
        let err = instance.run().unwrap_err();
        assert!(matches!(err, Error::Panic { .. }), "{lang:?}: {err:?}");
        assert!(runtime.pool_stats().discarded >= 1, "{lang:?}");
        let ok = runtime_of(lang, "passthrough");
        let mut other = ok.instance().unwrap();
        run_with_body(&mut other).unwrap();
    }
}

#[test]
fn a_panic_leaves_the_same_runtime_serving() {
    for lang in Lang::ALL {
        // One runtime whose chain panics only when asked to by the request.
        let runtime = runtime(lang, &["next"]);
        let mut instance = runtime
            .instance()
            .unwrap()
            .with_handler(|ctx| if ctx.request.uri == "/boom" { Err("handler refused".into()) } else { Ok(()) });
        instance.context_mut().request.set_uri("/boom");
        assert!(instance.run().is_err());
        instance.context_mut().request.set_uri("/fine");
        instance.run().unwrap();
        drop(instance);
        let mut panicking = runtime_of(lang, "panic").instance().unwrap();
        assert!(matches!(panicking.run(), Err(Error::Panic { .. })));
        assert!(matches!(panicking.run(), Err(Error::Panic { .. })));
    }
}

#[test]
fn a_loop_is_stopped_by_the_cpu_budget_and_the_runtime_stays_usable() {
    for lang in Lang::ALL {
        let runtime = builder().cpu_budget(50_000_000).function(fixture(lang, "loop")).build().unwrap();
        let mut instance = runtime.instance().unwrap();
        let err = instance.run().unwrap_err();
        assert!(matches!(&err, Error::CpuBudget { function, .. } if function == "loop"), "{lang:?}: {err:?}");
        let err = instance.run().unwrap_err();
        assert!(matches!(err, Error::CpuBudget { .. }), "{lang:?}: {err:?}");

        let passthrough = builder().cpu_budget(50_000_000).function(fixture(lang, "passthrough")).build().unwrap();
        let mut instance = passthrough.instance().unwrap();
        for _ in 0..3 {
            run_with_body(&mut instance).unwrap();
            assert_eq!(body(&instance), TEST_DATA);
        }
    }
}

#[test]
fn a_memory_bomb_is_stopped_by_the_memory_limit_and_the_runtime_stays_usable() {
    for lang in Lang::ALL {
        let runtime = builder().memory_limit(48 << 20).function(fixture(lang, "memory-bomb")).build().unwrap();
        let mut instance = runtime.instance().unwrap();
        for _ in 0..2 {
            let err = instance.run().unwrap_err();
            assert!(
                matches!(&err, Error::MemoryLimit { function, limit_bytes } if function == "memory-bomb" && *limit_bytes == 48 << 20),
                "{lang:?}: {err:?}"
            );
        }
        assert!(runtime.pool_stats().discarded >= 1, "{lang:?}");
    }
}

#[test]
fn a_function_built_for_another_signature_is_refused_at_load() {
    let err = builder().function(fixture(Lang::Go, "bad-signature")).build().unwrap_err();
    let Error::SignatureMismatch { function, expected, found } = &err else { panic!("{err:?}") };
    assert_eq!(function, "bad-signature");
    assert_eq!(expected, "http@v0.1.0");
    assert_eq!(found, "not-http@v9.9.9");
}

#[test]
fn no_functions_is_an_error() {
    assert!(matches!(Runtime::new([]), Err(Error::NoFunctions)));
}

#[test]
fn a_mixed_chain_accumulates_through_every_link() {
    let runtime =
        builder().function(fixture(Lang::Go, "http-next")).function(fixture(Lang::Rust, "http-next")).build().unwrap();
    let mut instance = runtime.instance().unwrap().with_handler(append("-native"));
    run_with_body(&mut instance).unwrap();
    assert_eq!(body(&instance), "Test Data-modified-modified-native");

    let runtime = builder()
        .function(fixture(Lang::Rust, "http-next"))
        .function(fixture(Lang::Go, "http-next"))
        .function(fixture(Lang::Rust, "http-next"))
        .build()
        .unwrap();
    let mut instance = runtime.instance().unwrap();
    for _ in 0..3 {
        run_with_body(&mut instance).unwrap();
        assert_eq!(body(&instance), "Test Data-modified-modified-modified");
    }
}

#[test]
fn a_function_that_does_not_call_next_ends_the_chain() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let runtime = builder()
        .function(fixture(Lang::Go, "http-handler"))
        .function(fixture(Lang::Rust, "http-next"))
        .build()
        .unwrap();
    let mut instance = runtime.instance().unwrap().with_handler(move |_| {
        seen.fetch_add(1, Ordering::Relaxed);
        Ok(())
    });
    run_with_body(&mut instance).unwrap();
    assert_eq!(body(&instance), "Test Data-modified");
    assert_eq!(calls.load(Ordering::Relaxed), 0);
}

#[test]
fn an_error_deep_in_the_chain_keeps_its_kind() {
    for (first, last) in [(Lang::Go, Lang::Rust), (Lang::Rust, Lang::Go)] {
        let runtime = builder().function(fixture(first, "next")).function(fixture(last, "panic")).build().unwrap();
        let mut instance = runtime.instance().unwrap();
        let err = instance.run().unwrap_err();
        assert!(matches!(&err, Error::Panic { function, .. } if function == "panic"), "{first:?}->{last:?}: {err:?}");
        let err = instance.run().unwrap_err();
        assert!(matches!(&err, Error::Panic { .. }), "{err:?}");
    }
}

#[test]
fn pooled_instances_are_reused_after_warm_up() {
    for lang in Lang::ALL {
        let runtime = runtime(lang, &["http-next"]);
        let mut instance = runtime.instance().unwrap();
        for i in 0..1_000 {
            instance.context_mut().response.set_body_string(format!("{i}"));
            instance.run().unwrap();
            assert_eq!(body(&instance), format!("{i}-modified"));
        }
        drop(instance);
        let warm = runtime.pool_stats();
        for _ in 0..1_000 {
            let mut instance = runtime.instance().unwrap();
            run_with_body(&mut instance).unwrap();
        }
        let after = runtime.pool_stats();
        assert_eq!(after.created, warm.created, "{lang:?}: no instantiation after warm-up");
        assert_eq!(after.reused, warm.reused + 1_000, "{lang:?}");
        assert_eq!(after.discarded, warm.discarded, "{lang:?}");
    }
}

/// Idle instances are kept per thread first; one left idle by a thread that
/// has stopped still serves other threads, with no new instantiation.
#[test]
fn an_instance_left_idle_by_one_thread_serves_the_others() {
    let runtime = runtime(Lang::Rust, &["passthrough"]);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut first = runtime.instance().unwrap();
            let mut second = runtime.instance().unwrap();
            run_with_body(&mut first).unwrap();
            run_with_body(&mut second).unwrap();
        });
    });
    let warm = runtime.pool_stats();
    assert_eq!(warm.idle, 2, "{warm:?}");
    for _ in 0..4 {
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let mut instance = runtime.instance().unwrap();
                run_with_body(&mut instance).unwrap();
                assert_eq!(body(&instance), TEST_DATA);
            });
        });
    }
    let after = runtime.pool_stats();
    assert_eq!(after.created, warm.created, "{after:?}");
    assert_eq!(after.reused, warm.reused + 4, "{after:?}");
    assert_eq!(after.idle, 2, "{after:?}");
}

#[test]
fn clear_empties_the_pool_and_the_next_run_still_works() {
    for lang in Lang::ALL {
        let runtime = runtime(lang, &["passthrough"]);
        let mut in_flight = runtime.instance().unwrap();
        drop(runtime.instance().unwrap());
        assert!(runtime.pool_stats().idle >= 1);
        runtime.clear();
        assert_eq!(runtime.pool_stats().idle, 0, "{lang:?}");
        // An instance taken before clear() finishes normally...
        run_with_body(&mut in_flight).unwrap();
        drop(in_flight);
        // ...and is not kept.
        assert_eq!(runtime.pool_stats().idle, 0, "{lang:?}");
        let mut instance = runtime.instance().unwrap();
        run_with_body(&mut instance).unwrap();
        assert_eq!(body(&instance), TEST_DATA);
    }
}

#[test]
fn instances_are_recycled_after_max_uses() {
    for lang in Lang::ALL {
        let runtime = builder().max_uses(5).function(fixture(lang, "passthrough")).build().unwrap();
        for _ in 0..3 {
            let mut instance = runtime.instance().unwrap();
            for _ in 0..5 {
                run_with_body(&mut instance).unwrap();
            }
        }
        let stats = runtime.pool_stats();
        assert_eq!(stats.discarded, 3, "{lang:?}: {stats:?}");
        assert_eq!(stats.created, 3, "{lang:?}: {stats:?}");
    }
}

#[test]
fn concurrent_runs_never_cross_talk() {
    for (lang, runs) in [(Lang::Rust, 2_000), (Lang::Go, 2_000)] {
        let runtime = runtime(lang, &["http-next"]);
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let runtime = runtime.clone();
                scope.spawn(move || {
                    let mut instance = runtime.instance().unwrap();
                    for i in 0..runs {
                        let sent = format!("thread {thread} run {i}");
                        instance.context_mut().response.set_body_string(sent.clone());
                        instance.run().unwrap();
                        assert_eq!(body(&instance), format!("{sent}-modified"), "{lang:?}");
                        if i % 100 == 0 {
                            // Swap instances now and then, so pooled guests move between threads.
                            instance = runtime.instance().unwrap();
                        }
                    }
                });
            }
        });
    }
}

/// The reuse pattern of the docs: one instance, a request set per run. A run
/// that answers differently (here a denial by the native handler) shows
/// nothing the run before it left: no header, no body, no status, and not the
/// request headers of the run before.
#[test]
fn a_reused_instance_starts_every_run_from_a_default_context() {
    for lang in Lang::ALL {
        let runtime = runtime(lang, &["next"]);
        let mut instance = runtime.instance().unwrap().with_handler(|ctx| {
            let seen = ctx.request.headers.first("x-seen").map(str::to_owned);
            ctx.response.headers_mut().set("x-seen-by-handler", [seen.unwrap_or_default()]);
            if ctx.request.body_str() == Some("let me in") {
                ctx.response.headers_mut().set("x-session", ["alice"]);
                ctx.response.set_body_string("welcome");
            } else {
                ctx.response.set_status_code(401).map_err(HandlerError::new)?;
                ctx.response.set_body_string("denied");
            }
            Ok(())
        });
        instance.context_mut().request.set_body_string("let me in");
        instance.context_mut().request.headers_mut().set("x-seen", ["first"]);
        instance.run().unwrap();
        let first = &instance.context().response;
        assert_eq!((first.status_code, first.body_str()), (200, Some("welcome")), "{lang:?}");
        assert_eq!(first.headers.first("x-session"), Some("alice"), "{lang:?}");
        assert_eq!(first.headers.first("x-seen-by-handler"), Some("first"), "{lang:?}");

        instance.context_mut().request.set_body_string("who knows");
        instance.run().unwrap();
        let second = &instance.context().response;
        assert_eq!((second.status_code, second.body_str()), (401, Some("denied")), "{lang:?}");
        assert_eq!(second.headers.first("x-session"), None, "{lang:?}: a header of the run before");
        assert_eq!(second.headers.first("x-seen-by-handler"), Some(""), "{lang:?}: a request header of the run before");

        // Running again without setting anything runs on a default context.
        instance.run().unwrap();
        assert_eq!(instance.context().response.body_str(), Some("denied"), "{lang:?}");
        assert_eq!(instance.context().request.body_str(), Some(""), "{lang:?}");

        // `set_context` hands back the last result and sets the next input whole.
        let mut next = scale_runtime::Context::default();
        next.request.set_body_string("let me in");
        let previous = instance.set_context(next);
        assert_eq!(previous.response.status_code, 401, "{lang:?}");
        instance.run().unwrap();
        assert_eq!(instance.context().response.body_str(), Some("welcome"), "{lang:?}");
    }
}
