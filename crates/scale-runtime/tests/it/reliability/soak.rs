//! Fault injection and soak: good requests mixed with panics, errors,
//! endless loops, memory bombs and malformed output, in Go and Rust. Every
//! good run must answer with its own body, every bad one with the right
//! error, and the pools must never hand out an instance that failed.

use std::time::Instant;

use scale_func::{Language, ScaleFunc, SignatureId};
use scale_runtime::{Context, Error, Instance, PoolStats, Runtime};

use super::{Rng, count_from_env, full_scale, memory_heavy, rss_kib};
use crate::common::{Lang, builder, fixture};

/// Runs in CI; `cargo xtask soak` sets `SCALE_SOAK_RUNS` (10,000 by default).
const CI_RUNS: usize = 1_000;
const RUNS_VAR: &str = "SCALE_SOAK_RUNS";
const MEMORY_LIMIT: u64 = 48 << 20;
/// Enough for either memory bomb to reach `MEMORY_LIMIT` on a kept instance,
/// so that it fails on memory: the Go one takes about 18 million points from
/// a fresh instance, and the Rust one fills each 1 MiB it allocates with
/// `memory.fill`, which costs a point a byte (about 50 million in all).
const CPU_BUDGET: u64 = 100_000_000;
/// How much the resident set may grow between the end of warm-up and the
/// end of a full soak.
const RSS_GROWTH_BOUND_KIB: u64 = 32 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Good,
    Error,
    Panic,
    Loop,
    Bomb,
    Malformed,
}

impl Fault {
    /// Picks a run's kind: a little more than half are good.
    fn pick(rng: &mut Rng) -> Fault {
        match rng.below(100) {
            0..55 => Fault::Good,
            55..65 => Fault::Error,
            65..75 => Fault::Panic,
            75..82 => Fault::Loop,
            82..89 => Fault::Bomb,
            _ => Fault::Malformed,
        }
    }

    fn uri(self) -> &'static str {
        match self {
            Fault::Good => "/echo",
            Fault::Error => "/error",
            Fault::Panic => "/panic",
            Fault::Loop => "/loop",
            Fault::Bomb => "/bomb",
            Fault::Malformed => "/",
        }
    }

    /// Whether the run must cost the instance its place in the pool.
    fn poisons(self) -> bool {
        !matches!(self, Fault::Good | Fault::Error)
    }
}

/// A guest that answers every run with eight bytes that are not a `RunResult`.
fn malformed_function() -> ScaleFunc {
    let wat = r#"(module
        (memory (export "memory") 1)
        (data (i32.const 2048) "\ff\ff\ff\ff\ff\ff\ff\ff")
        (func (export "scale_abi_version") (result i32) i32.const 1)
        (func (export "resize") (param i32) (result i32) i32.const 1024)
        (func (export "run") (param i32) (result i64) i64.const 8796093022216))"#;
    let wasm = wasmer::wat2wasm(wat.as_bytes()).expect("valid WAT");
    let signature = SignatureId::new("http", "v0.1.0").unwrap();
    ScaleFunc::new("malformed", "test", signature, Language::Rust, wasm.into_owned()).unwrap()
}

/// One pool under test, and what the soak expects of it.
struct Target {
    name: &'static str,
    runtime: Runtime,
    /// An instance kept across runs (healed after each failure), or none yet.
    kept: Option<Instance>,
    poisoning_runs: u64,
    good_runs: u64,
}

impl Target {
    fn new(name: &'static str, runtime: Runtime) -> Self {
        Target { name, runtime, kept: None, poisoning_runs: 0, good_runs: 0 }
    }

    /// Guest instances out of the pool right now.
    fn in_use(&self) -> u64 {
        u64::from(self.kept.is_some())
    }

    fn check_balance(&self, run: usize) {
        let stats = self.runtime.pool_stats();
        assert_eq!(
            stats.created,
            stats.discarded + stats.idle + self.in_use(),
            "{} run {run}: every instance made is idle, in use or discarded: {stats:?}",
            self.name
        );
    }
}

fn check_outcome(fault: Fault, function: &str, sent: &[u8], result: Result<(), Error>, context: &Context, what: &str) {
    match (fault, result) {
        (Fault::Good, Ok(())) => {
            assert!(context.response.body == sent, "{what}: the answer is not this request's body");
            assert_eq!(context.response.status_code, 200, "{what}");
        }
        (Fault::Error, Err(Error::Guest { function: f, message })) => {
            assert_eq!((f.as_str(), message.as_str()), (function, "guest error"), "{what}");
        }
        (Fault::Panic, Err(Error::Panic { function: f, message })) => {
            assert_eq!(f, function, "{what}");
            assert!(message.contains("guest panic"), "{what}: {message}");
        }
        (Fault::Loop, Err(Error::CpuBudget { function: f, budget })) => {
            assert_eq!((f.as_str(), budget), (function, CPU_BUDGET), "{what}");
        }
        (Fault::Bomb, Err(Error::MemoryLimit { function: f, limit_bytes })) => {
            assert_eq!((f.as_str(), limit_bytes), (function, MEMORY_LIMIT), "{what}");
        }
        (Fault::Malformed, Err(Error::MalformedOutput { function: f, what: detail })) => {
            assert_eq!(f, function, "{what}");
            assert!(detail.contains("does not decode"), "{what}: {detail}");
        }
        (fault, result) => panic!("{what}: a {fault:?} run ended with {result:?}"),
    }
}

/// One run of `fault` on `target`, through a fresh instance (`fresh`) or the
/// kept one, checking the answer and the pool's counters.
fn run_one(target: &mut Target, fault: Fault, fresh: bool, rng: &mut Rng, run: usize) {
    let function = if fault == Fault::Malformed { "malformed" } else { "faults" };
    let body = if fault == Fault::Good { rng.bytes(4096) } else { Vec::new() };
    let what =
        format!("{} run {run} ({fault:?}, {})", target.name, if fresh { "fresh instance" } else { "kept instance" });
    let mut context = Context::default();
    context.request.set_uri(fault.uri()).set_body(body.clone());
    context.response.set_body_string("not run");

    if fresh {
        let before = target.runtime.pool_stats();
        let mut instance = target.runtime.instance().expect("an instance");
        let taken = target.runtime.pool_stats();
        if before.idle > 0 {
            assert_eq!(
                (taken.reused, taken.idle, taken.created),
                (before.reused + 1, before.idle - 1, before.created),
                "{what}: an idle instance is reused"
            );
        } else {
            assert_eq!(taken.created, before.created + 1, "{what}: an empty pool makes an instance");
        }
        instance.set_context(context);
        let result = instance.run();
        check_outcome(fault, function, &body, result, instance.context(), &what);
        drop(instance);
        let after = target.runtime.pool_stats();
        let expected = if fault.poisons() {
            PoolStats { discarded: taken.discarded + 1, ..taken }
        } else {
            PoolStats { idle: taken.idle + 1, ..taken }
        };
        assert_eq!(after, expected, "{what}: a failed instance is discarded, a healthy one kept");
    } else {
        let instance = match target.kept.as_mut() {
            Some(instance) => instance,
            None => target.kept.insert(target.runtime.instance().expect("an instance")),
        };
        instance.set_context(context);
        let result = instance.run();
        check_outcome(fault, function, &body, result, instance.context(), &what);
    }
    if fault.poisons() {
        target.poisoning_runs += 1;
    } else {
        target.good_runs += 1;
    }
    target.check_balance(run);
}

/// The soak itself: `runs` runs, checked one by one; returns the resident
/// set after warm-up and at the end, in KiB.
fn soak(runs: usize, seed: u64) -> (u64, u64) {
    let faults = |lang| {
        builder()
            .memory_limit(MEMORY_LIMIT)
            .memory_high_water(MEMORY_LIMIT)
            .cpu_budget(CPU_BUDGET)
            .function(fixture(lang, "faults"))
            .build()
            .unwrap()
    };
    let malformed = builder().cpu_budget(CPU_BUDGET).function(malformed_function()).build().unwrap();
    let mut targets =
        [Target::new("go", faults(Lang::Go)), Target::new("rust", faults(Lang::Rust)), Target::new("wat", malformed)];
    let mut rng = Rng::new(seed);
    let warm_up = (runs / 10).clamp(1, 500);
    let mut rss_after_warm_up = rss_kib();
    let mut kinds = [0usize; 6];
    let started = Instant::now();
    for run in 0..runs {
        if run == warm_up {
            rss_after_warm_up = rss_kib();
        }
        let fault = Fault::pick(&mut rng);
        kinds[fault as usize] += 1;
        let target = match fault {
            Fault::Malformed => 2,
            _ => rng.below(2) as usize,
        };
        let fresh = rng.below(2) == 0;
        run_one(&mut targets[target], fault, fresh, &mut rng, run);
    }
    let rss_end = rss_kib();
    for target in &mut targets {
        target.kept = None;
        let stats = target.runtime.pool_stats();
        assert_eq!(
            stats.discarded, target.poisoning_runs,
            "{}: exactly the failed instances were discarded: {stats:?}",
            target.name
        );
        assert_eq!(stats.created, stats.discarded + stats.idle, "{}: {stats:?}", target.name);
        eprintln!(
            "soak {}: {} good, {} failing runs; pool {stats:?}",
            target.name, target.good_runs, target.poisoning_runs
        );
    }
    eprintln!(
        "soak: {runs} runs in {:.1?} (good, error, panic, loop, bomb, malformed: {kinds:?}); \
         VmRSS after warm-up {rss_after_warm_up} KiB, at the end {rss_end} KiB ({:+} KiB)",
        started.elapsed(),
        rss_end as i64 - rss_after_warm_up as i64
    );
    (rss_after_warm_up, rss_end)
}

#[test]
fn fault_injection_soak() {
    let runs = count_from_env(RUNS_VAR, CI_RUNS);
    let _heavy = memory_heavy();
    let (warm, end) = soak(runs, 0x5ca1e);
    if full_scale(RUNS_VAR) {
        // Only meaningful alone in its process, as `cargo xtask soak` runs it.
        assert!(
            end <= warm + RSS_GROWTH_BOUND_KIB,
            "the resident set grew by {} KiB over the soak (bound {RSS_GROWTH_BOUND_KIB} KiB)",
            end.saturating_sub(warm)
        );
    }
}
