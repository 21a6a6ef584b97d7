//! Hostile guests: modules written to break the sandbox, one class of
//! attack each (tables, memories, host-call loops, chains that multiply
//! work, sleeps, runs past their deadline, start functions, panic
//! messages). Each must end in a typed error or a refusal at load; none may
//! abort, hang or exhaust the host. Time bounds asserted here are generous
//! ceilings that tell "stopped" from "ran on", not measurements.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use scale_runtime::{Error, Runtime, RuntimeBuilder};

use crate::abi::{function, module, packed};

/// `run` answering the default context stored by [`module`].
fn answer() -> String {
    packed(8, 6)
}

const NEXT: &str = r#"(import "env" "next" (func $next (param i32 i32 i32 i32) (result i32)))"#;
/// Hands the default context (at 10, 4 bytes) to `next`, with room for the answer at 2048.
const CALL_NEXT: &str = "(drop (call $next (i32.const 10) (i32.const 4) (i32.const 2048) (i32.const 1024)))";
/// `run` calling `next` forever.
fn next_forever() -> String {
    format!("(loop $again {CALL_NEXT} (br $again)) i64.const 0")
}

const POLL: &str =
    r#"(import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))"#;
/// Sleeps 10 ms on the monotonic clock, again and again: one clock
/// subscription at 4096, events at 4200, the count at 4300.
const SLEEP_FOREVER: &str = "
    (i32.store (i32.const 4112) (i32.const 1))
    (i64.store (i32.const 4120) (i64.const 10000000))
    (loop $again
        (drop (call $poll (i32.const 4096) (i32.const 4200) (i32.const 1) (i32.const 4300)))
        (br $again))
    i64.const 0";
const SPIN_FOREVER: &str = "(loop $again (br $again)) i64.const 0";

/// A function named `spinner` that never returns.
fn spinner() -> scale_func::ScaleFunc {
    let wasm = wasmer::wat2wasm(module("", SPIN_FOREVER, "").as_bytes()).unwrap().into_owned();
    let signature = scale_func::SignatureId::new("http", "v0.1.0").unwrap();
    scale_func::ScaleFunc::new("spinner", "test", signature, scale_func::Language::Rust, wasm).unwrap()
}

fn build(builder: RuntimeBuilder, wat: &str) -> Result<Runtime, Error> {
    builder.function(function(wat)).build()
}

fn run(runtime: &Runtime) -> Result<(), Error> {
    runtime.instance()?.run()
}

/// A guest that asks for 2^28 more table elements than its table has:
/// wasmer would allocate gigabytes for them. The request fails inside the
/// guest (`table.grow` answers -1) and the run goes on.
#[test]
fn growing_a_table_by_two_to_the_28_fails_inside_the_guest() {
    let grow = "(table.grow $t (ref.null func) (i32.const 0x10000000))";
    let wat = module(
        "",
        &format!("(if (i32.ne {grow} (i32.const -1)) (then unreachable)) {}", answer()),
        "(table $t 1 funcref)",
    );
    let runtime = build(Runtime::builder(), &wat).expect("loads");
    run(&runtime).expect("the guest sees the refusal and answers");

    // Within the limit, growth works.
    let wat = module(
        "",
        &format!(
            "(if (i32.ne (table.grow $t (ref.null func) (i32.const 1000)) (i32.const 1)) (then unreachable)) {}",
            answer()
        ),
        "(table $t 1 funcref)",
    );
    run(&build(Runtime::builder(), &wat).expect("loads")).expect("growth within the limit succeeds");
}

/// The metering a CPU budget or a deadline compiles in notes refused table
/// growth, so that a trap after it is reported as the limit it is.
#[test]
fn a_metered_guest_that_traps_after_its_table_growth_was_refused_hits_the_memory_limit() {
    let wat =
        module("", "(drop (table.grow $t (ref.null func) (i32.const 0x10000000))) unreachable", "(table $t 1 funcref)");
    let runtime = build(Runtime::builder().cpu_budget(1_000_000), &wat).expect("loads");
    let err = run(&runtime).unwrap_err();
    assert!(matches!(&err, Error::MemoryLimit { function, .. } if function == "wat"), "{err:?}");
}

#[test]
fn a_table_declared_past_the_limit_is_refused_at_load() {
    let wat = module("", &answer(), "(table 10000000 funcref)");
    let err = build(Runtime::builder(), &wat).unwrap_err();
    assert!(matches!(&err, Error::InvalidModule { reason, .. } if reason.contains("tables")), "{err:?}");

    let wat = module("", &answer(), "(table 600 funcref) (table 600 funcref)");
    let err = build(Runtime::builder().table_limit(1000), &wat).unwrap_err();
    assert!(matches!(&err, Error::InvalidModule { reason, .. } if reason.contains("1200")), "{err:?}");
}

/// What tables may grow to comes out of the memory limit: with a 16 MiB
/// limit (256 pages) and a table that may grow to 65,536 elements (512 KiB,
/// 8 pages), the memory grows to 248 pages, not 256.
#[test]
fn tables_count_against_the_memory_limit() {
    let grow_to =
        |pages: u32| format!("(if (i32.eq (memory.grow (i32.const {})) (i32.const -1)) (then unreachable))", pages - 1);
    let limited = || Runtime::builder().memory_limit(16 << 20);
    let with_table = |pages| module("", &format!("{} {}", grow_to(pages), answer()), "(table 1 funcref)");

    run(&build(limited(), &with_table(248)).expect("loads")).expect("248 pages fit beside the table");
    let err = run(&build(limited(), &with_table(249)).expect("loads")).unwrap_err();
    assert!(matches!(err, Error::Trap { .. } | Error::MemoryLimit { .. }), "{err:?}");

    let without_table = module("", &format!("{} {}", grow_to(256), answer()), "");
    run(&build(limited(), &without_table).expect("loads")).expect("without tables the whole limit is memory");
}

/// Two tables without a maximum share what their minimums leave of the
/// limit: with 1,000 elements, each may grow to 500.
#[test]
fn growable_tables_share_the_table_limit() {
    let grow = |table: &str, by: u32, expect: i32| {
        format!(
            "(if (i32.ne (table.grow {table} (ref.null func) (i32.const {by})) (i32.const {expect})) (then unreachable))"
        )
    };
    let body = format!("{} {} {} {}", grow("$a", 499, 1), grow("$a", 1, -1), grow("$b", 499, 1), answer());
    let wat = module("", &body, "(table $a 1 funcref) (table $b 1 funcref)");
    run(&build(Runtime::builder().table_limit(1000), &wat).expect("loads")).expect("each table grows to its share");
}

#[test]
fn a_second_memory_is_refused_at_load() {
    for extra in ["(memory 1)", &"(memory 1) ".repeat(16)] {
        let wat = module("", &answer(), extra);
        let err = build(Runtime::builder(), &wat).unwrap_err();
        assert!(matches!(&err, Error::InvalidModule { reason, .. } if reason.contains("memories")), "{err:?}");
    }
}

/// A handler that counts its calls.
fn counting(runtime: &Runtime) -> (scale_runtime::Instance, Arc<AtomicU64>) {
    let calls = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&calls);
    let instance = runtime.instance().expect("an instance").with_handler(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(())
    });
    (instance, calls)
}

/// Each call of an import costs 1,000 points: a guest calling `next`
/// forever under a budget of 10^7 gets at most 10^4 calls.
#[test]
fn next_in_an_endless_loop_runs_out_of_budget() {
    let wat = module(NEXT, &next_forever(), "");
    let runtime = build(Runtime::builder().cpu_budget(10_000_000), &wat).expect("loads");
    let (mut instance, calls) = counting(&runtime);
    let err = instance.run().unwrap_err();
    assert!(matches!(&err, Error::CpuBudget { function, .. } if function == "wat"), "{err:?}");
    let calls = calls.load(Ordering::Relaxed);
    assert!((1..=10_000).contains(&calls), "{calls} calls of the handler");
}

/// Three functions that each call `next` 1,000 times would make 10^9
/// handler calls if each guest call had a budget of its own; one budget for
/// the whole run stops them.
#[test]
fn one_budget_covers_the_whole_chain() {
    let body = format!(
        "(local $i i32)
         (loop $again
            {CALL_NEXT}
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if $again (i32.lt_u (local.get $i) (i32.const 1000))))
         {}",
        answer()
    );
    let wat = module(NEXT, &body, "");
    let runtime = Runtime::builder()
        .cpu_budget(50_000_000)
        .functions([function(&wat), function(&wat), function(&wat)])
        .build()
        .expect("loads");
    let (mut instance, calls) = counting(&runtime);
    let err = instance.run().unwrap_err();
    assert!(matches!(err, Error::CpuBudget { .. }), "{err:?}");
    assert!(calls.load(Ordering::Relaxed) <= 50_000, "{} handler calls", calls.load(Ordering::Relaxed));

    // The same chain with one call each runs on the same budget.
    let once = module(NEXT, &format!("{CALL_NEXT} {}", answer()), "");
    let runtime = Runtime::builder()
        .cpu_budget(50_000_000)
        .functions([function(&once), function(&once), function(&once)])
        .build()
        .expect("loads");
    let (mut instance, calls) = counting(&runtime);
    instance.run().expect("a chain of single calls fits the budget");
    assert_eq!(calls.load(Ordering::Relaxed), 1);
}

/// Sleeping costs a point a nanosecond: a budget of 5 * 10^7 lets a guest
/// sleep about 50 ms in all.
#[test]
fn sleeping_counts_against_the_budget() {
    let wat = module(POLL, SLEEP_FOREVER, "");
    let runtime = build(Runtime::builder().cpu_budget(50_000_000), &wat).expect("loads");
    let started = Instant::now();
    let err = run(&runtime).unwrap_err();
    assert!(matches!(err, Error::CpuBudget { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "slept {:?}", started.elapsed());
}

#[test]
fn a_deadline_stops_a_guest_that_never_returns_and_the_next_run_gets_a_fresh_instance() {
    // Spins only when handed a context larger than 64 bytes.
    let body = format!("(if (i32.gt_u (local.get $len) (i32.const 64)) (then (loop $again (br $again)))) {}", answer());
    let wat = module("", &body, "");
    let deadline = Duration::from_millis(200);
    let runtime = build(Runtime::builder().deadline(deadline), &wat).expect("loads");
    let mut instance = runtime.instance().expect("an instance");
    instance.context_mut().request.set_body_string("x".repeat(100));
    let started = Instant::now();
    let err = instance.run().unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(&err, Error::Deadline { function, deadline: d } if function == "wat" && *d == deadline),
        "{err:?}"
    );
    assert!(took >= deadline && took < Duration::from_secs(5), "stopped after {took:?}");
    assert!(err.to_string().contains("200ms"), "{err}");

    instance.context_mut().request.set_body_string("");
    instance.run().expect("the replacement instance runs");
    let stats = runtime.pool_stats();
    assert_eq!((stats.created, stats.discarded), (2, 1), "{stats:?}");
}

#[test]
fn a_deadline_ends_sleeps_and_host_call_loops() {
    for (imports, body) in [(POLL, SLEEP_FOREVER.to_string()), (NEXT, next_forever())] {
        let wat = module(imports, &body, "");
        let runtime = build(Runtime::builder().deadline(Duration::from_millis(100)), &wat).expect("loads");
        let started = Instant::now();
        let err = run(&runtime).unwrap_err();
        assert!(matches!(err, Error::Deadline { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "stopped after {:?}", started.elapsed());
    }
}

/// With both limits, whichever comes first stops the run: a long deadline
/// leaves a spinning guest to its budget, a short one stops a sleeper.
#[test]
fn budget_and_deadline_together() {
    let spin = module("", SPIN_FOREVER, "");
    let runtime =
        build(Runtime::builder().cpu_budget(1_000_000).deadline(Duration::from_secs(60)), &spin).expect("loads");
    assert!(matches!(run(&runtime).unwrap_err(), Error::CpuBudget { .. }));

    let sleep = module(POLL, SLEEP_FOREVER, "");
    let runtime =
        build(Runtime::builder().cpu_budget(u64::MAX).deadline(Duration::from_millis(50)), &sleep).expect("loads");
    assert!(matches!(run(&runtime).unwrap_err(), Error::Deadline { .. }));
}

/// A deadline covers a guest further down the chain, and the error names
/// that guest.
#[test]
fn a_deadline_names_the_function_running_at_it() {
    let caller = function(&module(NEXT, &format!("{CALL_NEXT} {}", answer()), ""));
    let spinner = spinner();
    let runtime =
        Runtime::builder().deadline(Duration::from_millis(100)).functions([caller, spinner]).build().expect("loads");
    let err = run(&runtime).unwrap_err();
    assert!(matches!(&err, Error::Deadline { function, .. } if function == "spinner"), "{err:?}");
}

/// A start function that never returns is stopped by the budget or the
/// deadline at load, and reported as such.
#[test]
fn a_start_function_that_never_returns_is_stopped() {
    let wat = module("", &answer(), "(func $forever (loop $again (br $again))) (start $forever)");
    let err = build(Runtime::builder().cpu_budget(1_000_000), &wat).unwrap_err();
    assert!(matches!(&err, Error::CpuBudget { function, .. } if function == "wat"), "{err:?}");
    let err = build(Runtime::builder().deadline(Duration::from_millis(100)), &wat).unwrap_err();
    assert!(matches!(&err, Error::Deadline { function, .. } if function == "wat"), "{err:?}");

    // A start function that returns runs before anything else.
    let wat = module(
        "",
        &format!("(if (i32.ne (global.get $started) (i32.const 1)) (then unreachable)) {}", answer()),
        "(global $started (mut i32) (i32.const 0)) (func $start (global.set $started (i32.const 1))) (start $start)",
    );
    run(&build(Runtime::builder().cpu_budget(1_000_000), &wat).expect("loads")).expect("start ran first");
}

fn panic_message(data: &str, ptr: u32, len: u32) -> String {
    let wat = module(
        r#"(import "env" "panic" (func $panic (param i32 i32)))"#,
        &format!("(call $panic (i32.const {ptr}) (i32.const {len})) unreachable"),
        &format!(r#"(data (i32.const 4096) "{data}")"#),
    );
    match run(&build(Runtime::builder(), &wat).expect("loads")).unwrap_err() {
        Error::Panic { message, .. } => message,
        other => panic!("expected a panic, got {other:?}"),
    }
}

#[test]
fn bad_panic_messages_are_described_not_copied() {
    // 64 KiB of memory: a message running past its end.
    let message = panic_message("", 0xFFF0, 0x10000);
    assert!(message.contains("outside") && !message.contains('\0'), "{message:?}");
    let message = panic_message(r"\ff\fe\fd", 4096, 3);
    assert!(message.contains("not UTF-8"), "{message:?}");
    let message = panic_message(r"\1b[2J\1b]0;owned\07red", 4096, 17);
    assert!(!message.chars().any(|c| c.is_control()), "{message:?}");
    assert!(message.contains(r"\u{1b}[2J"), "{message:?}");
}

/// When a function further down the chain spends the rest of the run's
/// budget, the run has failed: the function that called `next` stops too,
/// even if it would return without another check.
#[test]
fn a_budget_spent_further_down_fails_the_run() {
    let caller = function(&module(NEXT, &format!("{CALL_NEXT} {}", answer()), ""));
    let spinner = spinner();
    let runtime = Runtime::builder().cpu_budget(1_000_000).functions([caller, spinner]).build().expect("loads");
    let err = run(&runtime).unwrap_err();
    assert!(matches!(&err, Error::CpuBudget { function, .. } if function == "spinner"), "{err:?}");
}

/// `fd_write` with two billion iovecs, `poll_oneoff` with two billion
/// subscriptions: refused with `EINVAL` (28) before the host reads any.
#[test]
fn host_calls_with_huge_vector_counts_are_refused() {
    let imports = r#"
        (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))"#;
    let body = format!(
        "(if (i32.ne (call $write (i32.const 1) (i32.const 0) (i32.const 0x7fffffff) (i32.const 4000)) (i32.const 28))
            (then unreachable))
         (if (i32.ne (call $poll (i32.const 0) (i32.const 0) (i32.const 0x7fffffff) (i32.const 4000)) (i32.const 28))
            (then unreachable))
         {}",
        answer()
    );
    run(&build(Runtime::builder().cpu_budget(1_000_000), &module(imports, &body, "")).expect("loads"))
        .expect("both calls answer EINVAL");
}

/// A guest answering with more header values than a header map may hold
/// (each tiny on the wire, each a string on the host) is malformed output:
/// the host stops decoding at the limit instead of building millions of
/// strings.
#[test]
fn an_answer_with_too_many_headers_is_malformed() {
    let max = scale_signature_http::MAX_HEADER_ITEMS;
    let answer_with = |values: usize| {
        let mut context = scale_runtime::Context::default();
        context.response.headers.set("x", (0..values).map(|_| String::new()));
        let bytes = scale_signature_http::RunResult::Context(context).encode_to_vec();
        let data: String = bytes.iter().map(|byte| format!("\\{byte:02x}")).collect();
        // About 16 KiB: it fits the module's one page past 4096.
        module("", &packed(4096, bytes.len() as u64), &format!(r#"(data (i32.const 4096) "{data}")"#))
    };
    run(&build(Runtime::builder(), &answer_with(max - 1)).expect("loads")).expect("within the limit");
    let err = run(&build(Runtime::builder(), &answer_with(max)).expect("loads")).unwrap_err();
    assert!(matches!(&err, Error::MalformedOutput { what, .. } if what.contains("header")), "{err:?}");
}
