//! Sandbox escapes by real Go and Rust guests (the `escape` fixture; the
//! Rust one is built for wasm32-wasip1, so it has the WASI imports a Rust
//! program would use): environment, files, directories, sockets, exit,
//! flooding standard output, huge allocations, and misuse of `next`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use scale_runtime::{Error, Instance};

use super::{memory_heavy, rss_kib};
use crate::common::{Lang, builder, fixture, runtime};

/// Runs the `escape` fixture's `attempt` with `arg` on `instance`.
fn attempt(instance: &mut Instance, attempt: &str, arg: &str) -> Result<String, Error> {
    instance.context_mut().request.set_uri(attempt).set_body_string(arg);
    instance.context_mut().response.set_body_string("");
    instance.run()?;
    Ok(instance.context().response.body_str().expect("UTF-8").to_string())
}

/// Asserts that the guest's attempt was refused: it failed with its own
/// error, quoting what the sandbox told it.
fn assert_denied(result: Result<String, Error>, what: &str) {
    match result {
        Err(Error::Guest { function, message }) => {
            assert_eq!(function, "escape", "{what}");
            assert!(message.starts_with("denied: "), "{what}: {message}");
        }
        other => panic!("{what}: expected the guest to be denied, got {other:?}"),
    }
}

/// A fresh, empty directory of the host's, for checking that nothing appears in it.
fn host_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("scale-escape-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn guests_see_no_environment_and_no_arguments() {
    assert!(std::env::var_os("PATH").is_some(), "the host itself has an environment");
    for lang in Lang::ALL {
        let mut instance = runtime(lang, &["escape"]).instance().unwrap();
        let seen = attempt(&mut instance, "/env", "").unwrap();
        assert_eq!(seen, "env=0 args=0 home=false", "{lang:?}");
    }
}

#[test]
fn guests_cannot_read_list_create_or_remove_host_files() {
    let dir = host_dir("files");
    let secret = dir.join("secret.txt");
    std::fs::write(&secret, "host secret").unwrap();
    let cwd = std::env::current_dir().unwrap();
    for lang in Lang::ALL {
        let runtime = runtime(lang, &["escape"]);
        let mut instance = runtime.instance().unwrap();
        let secret = secret.to_str().unwrap();
        for path in [secret, "/etc/passwd", "/proc/self/environ", "Cargo.toml", "../../Cargo.toml", "."] {
            assert_denied(attempt(&mut instance, "/read", path), &format!("{lang:?} read {path}"));
        }
        for path in ["/", ".", "..", dir.to_str().unwrap()] {
            assert_denied(attempt(&mut instance, "/readdir", path), &format!("{lang:?} readdir {path}"));
        }
        let created = dir.join("created.txt");
        let made = dir.join("made");
        for path in [created.to_str().unwrap(), "escaped.txt", "/tmp/scale-escaped.txt"] {
            assert_denied(attempt(&mut instance, "/create", path), &format!("{lang:?} create {path}"));
        }
        assert_denied(attempt(&mut instance, "/mkdir", made.to_str().unwrap()), &format!("{lang:?} mkdir"));
        assert_denied(attempt(&mut instance, "/remove", secret), &format!("{lang:?} remove"));
        assert!(!created.exists() && !made.exists(), "{lang:?}: nothing was created on the host");
        assert!(!cwd.join("escaped.txt").exists(), "{lang:?}");
        assert_eq!(std::fs::read_to_string(secret).unwrap(), "host secret", "{lang:?}: nothing was removed");
        // Refused attempts are ordinary guest errors: the instance was kept all along.
        let stats = runtime.pool_stats();
        assert_eq!((stats.created, stats.discarded), (1, 0), "{lang:?}: {stats:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn guests_cannot_open_sockets() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    for lang in Lang::ALL {
        let mut instance = runtime(lang, &["escape"]).instance().unwrap();
        assert_denied(attempt(&mut instance, "/dial", &addr), &format!("{lang:?} dial {addr}"));
        // A port that is free on the host: if the guest may listen on it at
        // all, that listener must live inside the guest, not on the host.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        match attempt(&mut instance, "/listen", &free.to_string()) {
            Ok(answer) => {
                assert!(answer.starts_with("in-guest listener on"), "{lang:?}: {answer}");
                let connected = std::net::TcpStream::connect_timeout(&free, std::time::Duration::from_secs(2));
                assert!(connected.is_err(), "{lang:?}: the guest's listener ({answer}) is a host socket");
            }
            denied => assert_denied(denied, &format!("{lang:?} listen {free}")),
        }
    }
    let accepted = listener.accept();
    assert!(
        matches!(&accepted, Err(err) if err.kind() == std::io::ErrorKind::WouldBlock),
        "no guest reached the host's listener: {accepted:?}"
    );
}

#[test]
fn proc_exit_fails_the_run_and_the_instance_is_replaced() {
    for lang in Lang::ALL {
        let runtime = runtime(lang, &["escape"]);
        let mut instance = runtime.instance().unwrap();
        let err = attempt(&mut instance, "/exit", "").unwrap_err();
        let Error::Panic { function, message } = &err else { panic!("{lang:?}: {err:?}") };
        assert_eq!(function, "escape");
        assert!(message.contains("code 7"), "{lang:?}: {message}");
        assert!(message.contains("leaving with code 7"), "{lang:?}: the guest's standard error is quoted: {message}");
        // The host goes on, and the next run gets a fresh guest.
        assert_eq!(attempt(&mut instance, "/env", "").unwrap(), "env=0 args=0 home=false", "{lang:?}");
        let stats = runtime.pool_stats();
        assert_eq!((stats.created, stats.discarded), (2, 1), "{lang:?}: {stats:?}");
    }
}

/// A guest sleeping for an hour (Go's `time.Sleep`, Rust's
/// `std::thread::sleep`: `poll_oneoff` on the host) pays for its sleep out
/// of the CPU budget, a point a nanosecond, and is stopped by a deadline.
#[test]
fn sleeping_for_an_hour_is_stopped_by_the_budget_or_the_deadline() {
    for lang in Lang::ALL {
        let runtime = builder().function(fixture(lang, "escape")).cpu_budget(200_000_000).build().unwrap();
        let started = std::time::Instant::now();
        let err = attempt(&mut runtime.instance().unwrap(), "/sleep", "3600").unwrap_err();
        assert!(matches!(&err, Error::CpuBudget { function, .. } if function == "escape"), "{lang:?}: {err:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "{lang:?}: slept {:?}", started.elapsed());

        let deadline = std::time::Duration::from_millis(300);
        let runtime = builder().function(fixture(lang, "escape")).deadline(deadline).build().unwrap();
        let mut instance = runtime.instance().unwrap();
        let started = std::time::Instant::now();
        let err = attempt(&mut instance, "/sleep", "3600").unwrap_err();
        assert!(matches!(&err, Error::Deadline { function, .. } if function == "escape"), "{lang:?}: {err:?}");
        assert!(started.elapsed() >= deadline, "{lang:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "{lang:?}: slept {:?}", started.elapsed());
        // A short sleep within the deadline completes, on a fresh instance.
        assert_eq!(attempt(&mut instance, "/sleep", "0").unwrap(), "slept 0 s", "{lang:?}");
    }
}

#[test]
fn a_gibibyte_written_to_stdout_is_dropped_not_kept() {
    const GIB: u64 = 1 << 30;
    let _heavy = memory_heavy();
    for lang in Lang::ALL {
        let mut instance = runtime(lang, &["escape"]).instance().unwrap();
        attempt(&mut instance, "/stdout", "1024").unwrap();
        let before = rss_kib();
        let answer = attempt(&mut instance, "/stdout", &GIB.to_string()).unwrap();
        let after = rss_kib();
        assert_eq!(answer, format!("wrote {GIB}"), "{lang:?}: every write succeeded");
        let grown = after.saturating_sub(before);
        eprintln!("{lang:?}: 1 GiB to stdout: VmRSS {before} -> {after} KiB ({grown:+} KiB)");
        // The capture keeps 64 KiB; other tests of this process run alongside,
        // so allow for them, but nowhere near the gibibyte.
        assert!(grown < 256 << 10, "{lang:?}: the host's memory grew by {grown} KiB");
    }
}

#[test]
fn a_huge_allocation_is_refused_at_the_memory_limit() {
    let _heavy = memory_heavy();
    const LIMIT: u64 = 32 << 20;
    for lang in Lang::ALL {
        let runtime = builder().memory_limit(LIMIT).function(fixture(lang, "escape")).build().unwrap();
        let mut instance = runtime.instance().unwrap();
        for size in [1u64 << 30, 64 << 20, 2_000_000_000] {
            let err = attempt(&mut instance, "/alloc", &size.to_string()).unwrap_err();
            assert!(
                matches!(&err, Error::MemoryLimit { function, limit_bytes } if function == "escape" && *limit_bytes == LIMIT),
                "{lang:?} {size}: {err:?}"
            );
            // The guest is replaced and the next, modest allocation works.
            assert_eq!(attempt(&mut instance, "/alloc", "1048576").unwrap(), "allocated 1048576", "{lang:?}");
        }
        assert!(instance.context().response.body.len() < 64, "{lang:?}");
    }
}

#[test]
fn a_rust_guest_that_handles_refusal_keeps_its_instance() {
    const LIMIT: u64 = 32 << 20;
    let runtime = builder().memory_limit(LIMIT).function(fixture(Lang::Rust, "escape")).build().unwrap();
    let mut instance = runtime.instance().unwrap();
    let err = attempt(&mut instance, "/try-alloc", &(1u64 << 30).to_string()).unwrap_err();
    assert!(
        matches!(&err, Error::Guest { message, .. } if message.starts_with("allocation refused")),
        "refused growth the guest handles is no failure of the run: {err:?}"
    );
    assert_eq!(attempt(&mut instance, "/try-alloc", "8388608").unwrap(), "allocated 8388608");
    let stats = runtime.pool_stats();
    assert_eq!((stats.created, stats.discarded), (1, 0), "{stats:?}");
}

#[test]
fn a_request_larger_than_the_memory_limit_fails_in_resize() {
    let _heavy = memory_heavy();
    const LIMIT: u64 = 32 << 20;
    for lang in Lang::ALL {
        let runtime = builder().memory_limit(LIMIT).function(fixture(lang, "escape")).build().unwrap();
        let mut instance = runtime.instance().unwrap();
        instance.context_mut().request.set_uri("/env").set_body(vec![b'x'; 40 << 20]);
        let err = instance.run().unwrap_err();
        assert!(
            matches!(&err, Error::MemoryLimit { function, limit_bytes } if function == "escape" && *limit_bytes == LIMIT),
            "{lang:?}: {err:?}"
        );
        assert_eq!(attempt(&mut instance, "/env", "").unwrap(), "env=0 args=0 home=false", "{lang:?}");
    }
}

#[test]
fn next_with_pointers_past_memory_is_malformed_output() {
    for lang in Lang::ALL {
        let runtime = runtime(lang, &["escape"]);
        let calls = Arc::new(AtomicU64::new(0));
        let seen = Arc::clone(&calls);
        let mut instance = runtime.instance().unwrap().with_handler(move |_| {
            seen.fetch_add(1, Ordering::Relaxed);
            Ok(())
        });
        let err = attempt(&mut instance, "/next-bad", "").unwrap_err();
        assert!(
            matches!(&err, Error::MalformedOutput { function, what } if function == "escape" && what.contains("next")),
            "{lang:?}: {err:?}"
        );
        assert_eq!(calls.load(Ordering::Relaxed), 0, "{lang:?}: nothing downstream ran");
        assert_eq!(attempt(&mut instance, "/next-many", "1").unwrap(), "called next 1 times", "{lang:?}");
        assert_eq!(runtime.pool_stats().discarded, 1, "{lang:?}");
    }
}

#[test]
fn each_call_of_next_runs_the_rest_of_the_chain_again() {
    // Three functions, each calling next ten times: the handler runs 10 × 10 × 10 times.
    let runtime = builder()
        .function(fixture(Lang::Go, "escape"))
        .function(fixture(Lang::Rust, "escape"))
        .function(fixture(Lang::Go, "escape"))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&calls);
    let mut instance = runtime.instance().unwrap().with_handler(move |_| {
        seen.fetch_add(1, Ordering::Relaxed);
        Ok(())
    });
    assert_eq!(attempt(&mut instance, "/next-many", "10").unwrap(), "called next 10 times");
    assert_eq!(calls.load(Ordering::Relaxed), 1000);
    // One function calling next ten thousand times.
    for lang in Lang::ALL {
        let calls = Arc::new(AtomicU64::new(0));
        let seen = Arc::clone(&calls);
        let mut instance = crate::common::runtime(lang, &["escape"]).instance().unwrap().with_handler(move |ctx| {
            seen.fetch_add(1, Ordering::Relaxed);
            ctx.response.set_body_string("from the handler");
            Ok(())
        });
        assert_eq!(attempt(&mut instance, "/next-many", "10000").unwrap(), "called next 10000 times", "{lang:?}");
        assert_eq!(calls.load(Ordering::Relaxed), 10_000, "{lang:?}");
    }
}

/// Runs a chain of `depth` copies of `lang`'s `next` fixture on a thread
/// with `stack` bytes of stack (tokio's blocking threads have 2 MiB), and
/// checks that the handler at the bottom ran once per run.
fn run_deep_chain(lang: Lang, depth: usize, stack: usize) {
    std::thread::Builder::new()
        .stack_size(stack)
        .spawn(move || {
            let runtime = match builder().functions((0..depth).map(|_| fixture(lang, "next"))).build() {
                Ok(runtime) => runtime,
                // Refusing a chain too long to run is a fine answer too.
                Err(err) => return eprintln!("{lang:?} × {depth}: refused at load: {err}"),
            };
            let calls = Arc::new(AtomicU64::new(0));
            let seen = Arc::clone(&calls);
            let mut instance = runtime.instance().unwrap().with_handler(move |ctx| {
                seen.fetch_add(1, Ordering::Relaxed);
                ctx.response.set_body_string("from the bottom");
                Ok(())
            });
            for _ in 0..2 {
                instance.run().unwrap_or_else(|err| panic!("{lang:?} × {depth}: {err}"));
                assert_eq!(instance.context().response.body_str(), Some("from the bottom"), "{lang:?}");
            }
            assert_eq!(calls.load(Ordering::Relaxed), 2, "{lang:?}");
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn a_long_chain_nests_without_overflowing_the_host_stack() {
    // The host's recursion is as deep as the chain is long (docs/abi.md).
    run_deep_chain(Lang::Rust, 64, 2 << 20);
    run_deep_chain(Lang::Go, 24, 2 << 20);
}

#[test]
fn a_chain_too_deep_for_the_stack_is_refused_at_load() {
    // Each link costs the host stack: hundreds of links would overflow a
    // 2 MiB thread and abort the process.
    let too_long = scale_runtime::MAX_CHAIN_LENGTH + 1;
    let err = builder().functions((0..too_long).map(|_| fixture(Lang::Rust, "next"))).build().unwrap_err();
    assert!(
        matches!(err, scale_runtime::Error::ChainTooLong { functions, max } if functions == too_long && max == too_long - 1),
        "{err}"
    );
    // The longest chain accepted runs on a 2 MiB thread.
    run_deep_chain(Lang::Rust, scale_runtime::MAX_CHAIN_LENGTH, 2 << 20);
}

#[test]
fn rust_guests_for_wasm32_unknown_import_nothing_but_the_abi() {
    let store = wasmer::Store::default();
    for name in ["faults", "passthrough", "memory-bomb", "loop", "panic"] {
        let module = wasmer::Module::new(&store, fixture(Lang::Rust, name).function()).unwrap();
        for import in module.imports() {
            assert_eq!(import.module(), "env", "{name} imports {}.{}", import.module(), import.name());
            assert!(["next", "next_result", "panic"].contains(&import.name()), "{name} imports env.{}", import.name());
        }
    }
}
