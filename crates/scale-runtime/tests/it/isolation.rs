//! Per-run isolation: with `Isolation::PerRun` no run sees what another
//! left in globals, tables or memory; with the default, instances keep it.
//! Tiny WAT modules check each kind of state (they trap when they find state
//! from an earlier run); the `remember` fixtures check real Go and Rust
//! guests, from many threads.

use std::sync::atomic::{AtomicU64, Ordering};

use scale_runtime::{Error, Instance, Isolation, Runtime, RuntimeBuilder};

use crate::abi::{function, module, packed};
use crate::common::{Lang, builder, fixture};

/// Whether an instance whose memory grew during a run is reset (Linux) or
/// replaced by a fresh one (elsewhere): the pool counts differ, the
/// isolation does not.
const GROWN_MEMORY_IS_RESET: bool = cfg!(target_os = "linux");

/// `run` answering the default context stored by [`module`].
fn answer() -> String {
    packed(8, 6)
}

fn wat_runtime(isolation: Isolation, wat: &str) -> Runtime {
    Runtime::builder().isolation(isolation).function(function(wat)).build().expect("module loads")
}

/// Runs `runtime` `times` times on one instance, returning the first error.
fn runs(runtime: &Runtime, times: usize) -> Result<(), Error> {
    let mut instance = runtime.instance()?;
    (0..times).try_for_each(|_| instance.run())
}

fn assert_trap(result: Result<(), Error>) {
    assert!(matches!(result, Err(Error::Trap { .. })), "expected a trap, got {result:?}");
}

/// Traps when a mutable global is not as start-up left it (5), then changes it.
fn global_module() -> String {
    let run = format!(
        "(if (i32.ne (global.get $g) (i32.const 5)) (then unreachable))
         (global.set $g (i32.const 6)) {}",
        answer()
    );
    module("", &run, "(global $g (mut i32) (i32.const 0)) (func $init (global.set $g (i32.const 5))) (start $init)")
}

/// Traps when a byte of memory is not as instantiation left it (0), or the
/// memory is not its first page only; then writes the byte and grows the
/// memory by two pages, writing to the first new one.
fn memory_module() -> String {
    let run = format!(
        "(if (i32.ne (i32.load8_u (i32.const 40000)) (i32.const 0)) (then unreachable))
         (if (i32.ne (memory.size) (i32.const 1)) (then unreachable))
         (i32.store8 (i32.const 40000) (i32.const 1))
         (drop (memory.grow (i32.const 2)))
         (if (i32.ne (i32.load8_u (i32.const 70000)) (i32.const 0)) (then unreachable))
         (i32.store8 (i32.const 70000) (i32.const 1)) {}",
        answer()
    );
    module("", &run, "")
}

/// Traps when table element 0 is not the function the element segment put
/// there (which answers 1), then puts another there.
fn table_module() -> String {
    let run = format!(
        "(if (i32.ne (call_indirect (type $answer) (i32.const 0)) (i32.const 1)) (then unreachable))
         (table.set $t (i32.const 0) (ref.func $two)) {}",
        answer()
    );
    module(
        "",
        &run,
        r#"(type $answer (func (result i32)))
           (table $t 2 funcref)
           (func $one (result i32) i32.const 1)
           (func $two (result i32) i32.const 2)
           (elem (table $t) (i32.const 0) func $one)
           (elem declare func $two)"#,
    )
}

#[test]
fn pooled_instances_keep_globals_memory_and_tables() {
    for wat in [global_module(), memory_module(), table_module()] {
        let runtime = wat_runtime(Isolation::Pooled, &wat);
        assert_trap(runs(&runtime, 2));
    }
}

#[test]
fn per_run_isolation_resets_globals_memory_and_tables() {
    for wat in [global_module(), memory_module(), table_module()] {
        let runtime = wat_runtime(Isolation::PerRun, &wat);
        runs(&runtime, 5).expect("every run starts from the state after start-up");
        runs(&runtime, 5).expect("so does every run of the next instance");
        let stats = runtime.pool_stats();
        if GROWN_MEMORY_IS_RESET {
            assert_eq!(stats.created, 1, "the instance is reset, not replaced: {stats:?}");
        }
        assert_eq!(runtime.isolation(), Isolation::PerRun);
    }
}

/// A table that grew cannot shrink back: the instance is replaced, and the
/// next run still starts from a fresh state.
#[test]
fn an_instance_whose_table_grew_is_replaced() {
    let run = format!(
        "(if (i32.ne (table.size $t) (i32.const 1)) (then unreachable))
         (drop (table.grow $t (ref.null func) (i32.const 3))) {}",
        answer()
    );
    let wat = module("", &run, "(table $t 1 10 funcref)");
    let runtime = wat_runtime(Isolation::PerRun, &wat);
    runs(&runtime, 4).expect("each run gets a table of one element");
    assert_eq!(runtime.pool_stats().created, 4, "one instance for each run after the first");
}

/// The CPU budget's points are the run's, not the snapshot's: a budget
/// that holds a run holds every run, and one that does not stops each.
#[test]
fn the_cpu_budget_and_deadline_hold_under_per_run_isolation() {
    // Spins a thousand times for each byte of the context.
    let spin = format!(
        "(local $i i32)
         (local.set $i (i32.mul (local.get $len) (i32.const 1000)))
         (loop $again
            (local.set $i (i32.sub (local.get $i) (i32.const 1)))
            (br_if $again (i32.gt_s (local.get $i) (i32.const 0)))) {}",
        answer()
    );
    let runtime = Runtime::builder()
        .isolation(Isolation::PerRun)
        .cpu_budget(1_000_000)
        .deadline(std::time::Duration::from_secs(5))
        .function(function(&module("", &spin, "")))
        .build()
        .expect("module loads");
    let mut instance = runtime.instance().expect("an instance");
    for _ in 0..3 {
        for _ in 0..3 {
            instance.context_mut().request.set_body_string("short");
            instance.run().expect("a short context fits the budget");
        }
        instance.context_mut().request.set_body_string("long".repeat(500));
        let outcome = instance.run();
        assert!(matches!(outcome, Err(Error::CpuBudget { .. })), "the budget stops a long spin: {outcome:?}");
    }
    assert_eq!(runtime.pool_stats().created, 1, "a guest stopped by its budget is reset, not replaced");
}

/// The guest's answer: `"<runs>:<held>:<previous body>"`.
fn answer_of(instance: &Instance) -> String {
    instance.context().response.body_str().expect("the answer is UTF-8").to_string()
}

fn remember(lang: Lang, configure: impl FnOnce(RuntimeBuilder) -> RuntimeBuilder) -> Runtime {
    configure(builder().function(fixture(lang, "remember"))).build().unwrap_or_else(|err| panic!("{lang:?}: {err}"))
}

fn run_remember(instance: &mut Instance, uri: &str, body: &str) -> Result<String, Error> {
    let request = &mut instance.context_mut().request;
    request.uri = uri.into();
    request.set_body_string(body);
    instance.run()?;
    Ok(answer_of(instance))
}

#[test]
fn pooled_guests_see_the_previous_run() {
    for lang in Lang::ALL {
        let runtime = remember(lang, |builder| builder);
        let mut instance = runtime.instance().unwrap();
        assert_eq!(run_remember(&mut instance, "/", "first").unwrap(), "1:0:", "{lang:?}");
        assert_eq!(run_remember(&mut instance, "/", "second").unwrap(), "2:0:first", "{lang:?}");
        drop(instance);
        let mut instance = runtime.instance().unwrap();
        assert_eq!(run_remember(&mut instance, "/", "third").unwrap(), "3:0:second", "{lang:?}: the pooled instance");
    }
}

/// A small random generator for the bodies (xorshift).
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn isolated_guests_never_see_another_run_on_eight_threads() {
    for lang in Lang::ALL {
        let runtime = remember(lang, |builder| builder.isolation(Isolation::PerRun));
        let runs_per_thread = if lang == Lang::Go { 40 } else { 200 };
        let done = AtomicU64::new(0);
        std::thread::scope(|scope| {
            for thread in 0..8u64 {
                let (runtime, done) = (&runtime, &done);
                scope.spawn(move || {
                    let mut seed = 0x9e37_79b9_7f4a_7c15 ^ (thread + 1).wrapping_mul(0x1234_5678_9abc_def1);
                    let mut instance = runtime.instance().unwrap();
                    for run in 0..runs_per_thread {
                        let len = (next_random(&mut seed) % 300) as usize;
                        let body: String =
                            (0..len).map(|_| char::from(b'a' + (next_random(&mut seed) % 26) as u8)).collect();
                        let uri = if run % 7 == 3 { "/grow" } else { "/" };
                        assert_eq!(run_remember(&mut instance, uri, &body).unwrap(), "1:0:", "{lang:?}");
                        // Now and then, give the guest back and take one from the pool.
                        if run % 5 == 4 {
                            drop(instance);
                            instance = runtime.instance().unwrap();
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        assert_eq!(done.load(Ordering::Relaxed), 8 * runs_per_thread, "{lang:?}");
        let stats = runtime.pool_stats();
        if GROWN_MEMORY_IS_RESET {
            assert_eq!(stats.discarded, 0, "{lang:?}: instances are reset, not replaced: {stats:?}");
            assert!(stats.created <= 9, "{lang:?}: one instance per thread at most: {stats:?}");
        }
    }
}

/// Memory grown during a run shrinks back: a guest that grows its memory by
/// 4 MiB every run stays within a 16 MiB limit however often it runs, on
/// one instance.
#[test]
fn memory_grown_in_a_run_shrinks_back() {
    for lang in Lang::ALL {
        let runtime = remember(lang, |builder| builder.isolation(Isolation::PerRun).memory_limit(16 << 20));
        let mut instance = runtime.instance().unwrap();
        for _ in 0..12 {
            assert_eq!(run_remember(&mut instance, "/grow", "body").unwrap(), "1:0:", "{lang:?}");
        }
        if GROWN_MEMORY_IS_RESET {
            assert_eq!(runtime.pool_stats().created, 1, "{lang:?}");
        }
    }
}

#[test]
fn a_run_that_traps_or_exhausts_memory_leaves_nothing_behind() {
    for lang in Lang::ALL {
        let runtime = remember(lang, |builder| builder.isolation(Isolation::PerRun).memory_limit(32 << 20));
        let mut instance = runtime.instance().unwrap();
        assert_eq!(run_remember(&mut instance, "/", "before").unwrap(), "1:0:", "{lang:?}");
        let trapped = run_remember(&mut instance, "/trap", "secret");
        assert!(matches!(trapped, Err(Error::Panic { .. })), "{lang:?}: {trapped:?}");
        assert_eq!(run_remember(&mut instance, "/", "after").unwrap(), "1:0:", "{lang:?}");
        let exhausted = run_remember(&mut instance, "/exhaust", "secret");
        assert!(matches!(exhausted, Err(Error::MemoryLimit { .. })), "{lang:?}: {exhausted:?}");
        assert_eq!(run_remember(&mut instance, "/", "after").unwrap(), "1:0:", "{lang:?}");
        drop(instance);
        let mut instance = runtime.instance().unwrap();
        assert_eq!(run_remember(&mut instance, "/", "pooled").unwrap(), "1:0:", "{lang:?}");
        let stats = runtime.pool_stats();
        if GROWN_MEMORY_IS_RESET {
            assert_eq!((stats.created, stats.discarded), (1, 0), "{lang:?}: reset after the trap, not replaced");
        }
    }
}

/// Good and failing runs mixed on one pool, as in the fault-injection soak:
/// under per-run isolation every failure (guest error, panic, CPU budget,
/// memory limit) resets the instance instead of discarding it, and the good
/// runs after it answer as they should.
#[test]
fn failing_runs_reset_their_instance_and_good_runs_go_on() {
    for lang in Lang::ALL {
        let runtime = builder()
            .isolation(Isolation::PerRun)
            .memory_limit(16 << 20)
            // Enough for the memory bomb to reach the limit.
            .cpu_budget(100_000_000)
            .function(fixture(lang, "faults"))
            .build()
            .unwrap_or_else(|err| panic!("{lang:?}: {err}"));
        let mut seed = 0x5ca1e ^ lang as u64;
        let mut instance = runtime.instance().unwrap();
        for run in 0..60 {
            let uri = ["/echo", "/echo", "/error", "/panic", "/loop", "/bomb"][(next_random(&mut seed) % 6) as usize];
            let body: String = format!("body {run} {}", next_random(&mut seed));
            let request = &mut instance.context_mut().request;
            request.uri = uri.into();
            request.set_body_string(&body);
            let result = instance.run();
            let what = format!("{lang:?} run {run} {uri}");
            match (uri, result) {
                ("/echo", Ok(())) => assert_eq!(instance.context().response.body_str(), Some(body.as_str()), "{what}"),
                ("/error", Err(Error::Guest { .. }))
                | ("/panic", Err(Error::Panic { .. }))
                | ("/loop", Err(Error::CpuBudget { .. }))
                | ("/bomb", Err(Error::MemoryLimit { .. })) => {}
                (_, result) => panic!("{what}: {result:?}"),
            }
            if run % 9 == 8 {
                drop(instance);
                instance = runtime.instance().unwrap();
            }
        }
        let stats = runtime.pool_stats();
        if GROWN_MEMORY_IS_RESET {
            assert_eq!((stats.created, stats.discarded), (1, 0), "{lang:?}: {stats:?}");
        }
    }
}

/// Start-up (`_initialize`, or a start function) sets a global, a byte of
/// memory and, in `tables` modules, a table element; `run` traps unless it
/// finds them so, then changes them. Instances made while others are out
/// of the pool (from the function's template where start-up allows one)
/// all start as start-up left the first.
#[test]
fn every_instance_starts_as_start_up_left_it() {
    let check = format!(
        "(if (i32.ne (global.get $g) (i32.const 5)) (then unreachable))
         (if (i32.ne (i32.load8_u (i32.const 40000)) (i32.const 7)) (then unreachable))
         (if (i32.ne (call_indirect (type $answer) (i32.const 0)) (i32.const 2)) (then unreachable))
         (global.set $g (i32.const 6))
         (i32.store8 (i32.const 40000) (i32.const 8))
         (table.set $t (i32.const 0) (ref.func $one)) {}",
        answer()
    );
    for (entry, tables, budget) in [
        ("_initialize", false, false),
        ("_initialize", true, false),
        ("_initialize", false, true),
        ("start", false, false),
        ("start", false, true),
    ] {
        let (export, start) = match entry {
            "_initialize" => (r#"(export "_initialize")"#, ""),
            _ => ("", "(start $init)"),
        };
        let set_table = if tables { "(table.set $t (i32.const 0) (ref.func $two))" } else { "" };
        let init = format!(
            "(func $init {export}
                (global.set $g (i32.const 5))
                (i32.store8 (i32.const 40000) (i32.const 7))
                {set_table})
             {start}"
        );
        let elem = if tables { "$one" } else { "$two" };
        let extra = format!(
            r#"(type $answer (func (result i32)))
               (global $g (mut i32) (i32.const 0))
               (table $t 2 funcref)
               (func $one (result i32) i32.const 1)
               (func $two (result i32) i32.const 2)
               (elem (table $t) (i32.const 0) func {elem})
               (elem declare func $one $two)
               {init}"#
        );
        let wat = module("", &check, &extra);
        let mut builder = Runtime::builder().isolation(Isolation::PerRun).function(function(&wat));
        if budget {
            builder = builder.cpu_budget(1_000_000);
        }
        let runtime = builder.build().unwrap_or_else(|err| panic!("{entry} tables={tables} budget={budget}: {err}"));
        let mut instances: Vec<Instance> = (0..4).map(|_| runtime.instance().unwrap()).collect();
        for round in 0..2 {
            for (index, instance) in instances.iter_mut().enumerate() {
                instance.run().unwrap_or_else(|err| {
                    panic!("{entry} tables={tables} budget={budget}: instance {index}, round {round}: {err}")
                });
            }
        }
        assert_eq!(runtime.pool_stats().created, 4);
    }
}
