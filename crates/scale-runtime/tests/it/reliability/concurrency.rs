//! Many threads on one runtime: no cross-talk through pooled instances,
//! `clear()` racing runs in flight, and instances that outlive their runtime.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use scale_runtime::{Error, Instance, Runtime};

use super::{Rng, count_from_env};
use crate::common::{Lang, builder, fixture, runtime};

const THREADS: usize = 8;
/// Runs per thread in CI; `cargo xtask soak` sets `SCALE_STRESS_RUNS` (100,000).
const CI_RUNS_PER_THREAD: usize = 500;
const RUNS_VAR: &str = "SCALE_STRESS_RUNS";

/// A request body no other run sends: the thread and run number, then random bytes.
fn unique_body(rng: &mut Rng, thread: usize, run: usize) -> Vec<u8> {
    let mut body = format!("{thread}:{run}:").into_bytes();
    body.extend(rng.bytes(2048));
    body
}

/// Runs `instance` on `body` and checks that the answer (the `large-body`
/// fixture echoes the request body) is this run's and no other's.
fn echo(instance: &mut Instance, body: Vec<u8>, what: &str) {
    instance.context_mut().request.set_body(body.clone());
    instance.context_mut().response.set_body_string("");
    instance.run().unwrap_or_else(|err| panic!("{what}: {err}"));
    assert!(instance.context().response.body == body, "{what}: the answer belongs to another request");
}

#[test]
fn eight_threads_with_random_bodies_never_see_each_others_answers() {
    let runs = count_from_env(RUNS_VAR, CI_RUNS_PER_THREAD);
    for lang in Lang::ALL {
        // No recycling after max_uses: at full scale an instance serves more
        // than the default 100,000 runs, and every discard here would be a failure.
        let runtime = builder().max_uses(u64::MAX).function(fixture(lang, "large-body")).build().unwrap();
        std::thread::scope(|scope| {
            for thread in 0..THREADS {
                let runtime = runtime.clone();
                scope.spawn(move || {
                    let mut rng = Rng::new(thread as u64 + 1);
                    let mut instance = runtime.instance().unwrap();
                    for run in 0..runs {
                        let what = format!("{lang:?} thread {thread} run {run}");
                        echo(&mut instance, unique_body(&mut rng, thread, run), &what);
                        // Now and then give the guest back and take another,
                        // so pooled guests move between threads.
                        if rng.below(16) == 0 {
                            drop(instance);
                            instance = runtime.instance().unwrap();
                        }
                    }
                });
            }
        });
        let stats = runtime.pool_stats();
        assert_eq!(stats.discarded, 0, "{lang:?}: healthy instances are kept: {stats:?}");
        assert_eq!(stats.created, stats.idle, "{lang:?}: every instance came back: {stats:?}");
        // The instance made at load time, plus at most one per thread at a time.
        assert!(stats.created <= 1 + THREADS as u64, "{lang:?}: the pool is reused: {stats:?}");
    }
}

#[test]
fn clear_from_another_thread_never_breaks_a_run() {
    let runs = count_from_env(RUNS_VAR, CI_RUNS_PER_THREAD) / 2;
    for lang in Lang::ALL {
        let runtime = runtime(lang, &["large-body"]);
        let done = AtomicBool::new(false);
        let clears = AtomicU64::new(0);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while !done.load(Ordering::Acquire) {
                    runtime.clear();
                    clears.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(std::time::Duration::from_micros(500));
                }
            });
            let workers: Vec<_> = (0..4)
                .map(|thread| {
                    let runtime = runtime.clone();
                    scope.spawn(move || {
                        let mut rng = Rng::new(100 + thread as u64);
                        let mut instance = runtime.instance().unwrap();
                        for run in 0..runs {
                            let what = format!("{lang:?} thread {thread} run {run}");
                            echo(&mut instance, unique_body(&mut rng, thread, run), &what);
                            if rng.below(4) == 0 {
                                drop(instance);
                                instance = runtime.instance().unwrap();
                            }
                        }
                    })
                })
                .collect();
            for worker in workers {
                worker.join().unwrap();
            }
            done.store(true, Ordering::Release);
        });
        let stats = runtime.pool_stats();
        assert_eq!(stats.created, stats.discarded + stats.idle, "{lang:?}: {stats:?}");
        assert!(clears.load(Ordering::Relaxed) > 0);
        // The clears really took instances away: more had to be made than threads ran.
        assert!(stats.created > 5, "{lang:?}: {stats:?}");
        // After the last clear only instances that came back later are idle;
        // a final clear leaves none.
        runtime.clear();
        assert_eq!(runtime.pool_stats().idle, 0, "{lang:?}");
    }
}

#[test]
fn an_instance_outlives_its_runtime_and_keeps_working() {
    for lang in Lang::ALL {
        let runtime: Runtime = runtime(lang, &["faults"]);
        let sentinel = Arc::new(());
        let held = Arc::clone(&sentinel);
        let mut instance = runtime.instance().unwrap().with_handler(move |_| {
            let _ = &held;
            Ok(())
        });
        let clone = runtime.clone();
        drop(runtime);
        let mut other = clone.instance().unwrap();
        drop(clone);
        // Every handle to the runtime is gone; its instances still run...
        let mut rng = Rng::new(7);
        for run in 0..20 {
            instance.context_mut().request.set_uri("/echo");
            echo(&mut instance, unique_body(&mut rng, 0, run), &format!("{lang:?} run {run}"));
        }
        // ...still replace a guest that failed...
        instance.context_mut().request.set_uri("/panic");
        assert!(matches!(instance.run(), Err(Error::Panic { .. })), "{lang:?}");
        instance.context_mut().request.set_uri("/echo");
        echo(&mut instance, b"after the panic".to_vec(), &format!("{lang:?} after the panic"));
        // ...and move to other threads.
        let instance = std::thread::spawn(move || {
            instance.context_mut().request.set_uri("/echo");
            echo(&mut instance, b"on another thread".to_vec(), &format!("{lang:?} on another thread"));
            instance
        })
        .join()
        .unwrap();
        other.context_mut().request.set_uri("/echo");
        echo(&mut other, b"the other instance".to_vec(), &format!("{lang:?} other"));
        drop(other);
        // Dropping the last instance frees its chain (and with it the handlers).
        assert_eq!(Arc::strong_count(&sentinel), 2);
        drop(instance);
        assert_eq!(Arc::strong_count(&sentinel), 1, "{lang:?}: the instance's handlers were dropped");
    }
}
