//! A deny-by-default `wasi_snapshot_preview1` for guests built for WASI
//! (Go, and Rust on `wasm32-wasip1`).
//!
//! No arguments, no environment, no files, no sockets. Clocks and randomness
//! are real; standard output and error are captured (bounded) for `tracing`;
//! `proc_exit` ends the run, never the host. Each function's behaviour is
//! listed in the project's `docs/abi.md`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wasmer::{Function, FunctionEnv, FunctionEnvMut, Memory, MemoryView, Store};

use crate::deadline;
use crate::meter::{Meter, charge};
use crate::trap::{HostTrap, printable};

/// The shim's state for one guest instance: what its functions reach.
#[derive(Default)]
pub(crate) struct WasiEnv {
    /// The guest's memory, once instantiation has made it.
    pub memory: Option<Memory>,
    /// The guest's CPU budget, when it is metered.
    pub meter: Option<Meter>,
    pub stdout: Capture,
    pub stderr: Capture,
}

impl WasiEnv {
    /// Forgets the output of the previous run.
    pub fn clear_output(&mut self) {
        self.stdout.clear();
        self.stderr.clear();
    }
}

type Env<'a> = FunctionEnvMut<'a, WasiEnv>;

/// The import module name.
pub(crate) const MODULE: &str = "wasi_snapshot_preview1";

const SUCCESS: i32 = 0;
const EBADF: i32 = 8;
const EFAULT: i32 = 21;
const EINVAL: i32 = 28;
const ENOTSUP: i32 = 58;
const ESPIPE: i32 = 70;
const ENOTCAPABLE: i32 = 76;

/// At most this much of each of standard output and error is kept per run.
pub(crate) const CAPTURE_LIMIT: usize = 64 * 1024;

/// The most iovecs one `fd_write` and subscriptions one `poll_oneoff` take
/// (Linux's `IOV_MAX`); more is `EINVAL`.
const MAX_VECTORS: u32 = 1024;
/// What reading one iovec or one subscription costs, in budget points,
/// beyond the bytes it moves.
const IOVEC_POINTS: u64 = 8;
const SUBSCRIPTION_POINTS: u64 = 48;

/// The longest `poll_oneoff` sleeps before it looks at the budget and the
/// deadline again.
const SLEEP_SLICE: Duration = Duration::from_millis(10);

/// Bytes a guest wrote to standard output or error during one run, kept up
/// to [`CAPTURE_LIMIT`]; the rest is counted and dropped.
#[derive(Debug, Default)]
pub(crate) struct Capture {
    pub bytes: Vec<u8>,
    pub dropped: u64,
}

impl Capture {
    fn push(&mut self, bytes: &[u8]) {
        let room = CAPTURE_LIMIT.saturating_sub(self.bytes.len());
        let take = room.min(bytes.len());
        self.bytes.extend_from_slice(&bytes[..take]);
        self.dropped = self.dropped.saturating_add((bytes.len() - take) as u64);
    }

    /// Empties the capture, keeping its allocation.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.dropped = 0;
    }

    /// The text kept, lossily decoded, with control characters escaped
    /// ([`printable`]).
    pub fn text(&self) -> String {
        printable(&String::from_utf8_lossy(&self.bytes))
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty() && self.dropped == 0
    }
}

/// Makes one of the shim's functions for one instance.
pub(crate) type Make = fn(&mut Store, &FunctionEnv<WasiEnv>) -> Function;

/// Every preview1 function the shim provides, by name. Modules importing
/// anything else are refused; the type of each is the type of what its
/// constructor makes.
pub(crate) const FUNCTIONS: &[(&str, Make)] = &[
    ("args_sizes_get", NO_ARGUMENTS_SIZES),
    ("environ_sizes_get", NO_ARGUMENTS_SIZES),
    ("args_get", NO_ARGUMENTS),
    ("environ_get", NO_ARGUMENTS),
    ("clock_res_get", |store, env| {
        Function::new_typed_with_env(store, env, |mut env: Env<'_>, id: u32, out: u32| {
            if id > 3 {
                return EINVAL;
            }
            with_view(&mut env, |view| errno(write_u64(view, out, 1)))
        })
    }),
    ("clock_time_get", |store, env| {
        Function::new_typed_with_env(store, env, |mut env: Env<'_>, id: u32, _precision: u64, out: u32| {
            let now = match id {
                0 => SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64,
                1..=3 => monotonic_nanos(),
                _ => return EINVAL,
            };
            with_view(&mut env, |view| errno(write_u64(view, out, now)))
        })
    }),
    ("random_get", |store, env| {
        Function::new_typed_with_env(store, env, |mut env: Env<'_>, buf: u32, len: u32| {
            charge_guest(&mut env, u64::from(len));
            with_view(&mut env, |view| {
                if !in_bounds(view, buf, len) {
                    return EFAULT;
                }
                let mut bytes = vec![0u8; len as usize];
                if getrandom::fill(&mut bytes).is_err() {
                    // No entropy source: fail the call rather than hand out predictable bytes.
                    return ENOTSUP;
                }
                errno(view.write(u64::from(buf), &bytes).map_err(drop))
            })
        })
    }),
    ("fd_write", |store, env| {
        Function::new_typed_with_env(store, env, |mut env: Env<'_>, fd: u32, iovs: u32, iovs_len: u32, written: u32| {
            if fd != 1 && fd != 2 {
                return EBADF;
            }
            if iovs_len > MAX_VECTORS {
                return EINVAL;
            }
            let (data, store) = env.data_and_store_mut();
            let Some(memory) = data.memory.clone() else { return EFAULT };
            let view = memory.view(&store);
            let capture = if fd == 1 { &mut data.stdout } else { &mut data.stderr };
            let result = write_iovs(&view, capture, iovs, iovs_len);
            let answer = match result {
                Ok(total) => errno(write_u32(&view, written, total)),
                Err(()) => EFAULT,
            };
            // Every byte written counts, kept or dropped.
            charge(data.meter.as_ref(), u64::from(*result.as_ref().unwrap_or(&0)) + IOVEC_POINTS * u64::from(iovs_len));
            answer
        })
    }),
    ("fd_read", |store, env| {
        Function::new_typed_with_env(store, env, |mut env: Env<'_>, fd: u32, _iovs: u32, _iovs_len: u32, read: u32| {
            if fd != 0 {
                return EBADF;
            }
            // Standard input is empty.
            with_view(&mut env, |view| errno(write_u32(view, read, 0)))
        })
    }),
    ("fd_close", STDIO_ONLY),
    ("fd_sync", STDIO_ONLY),
    ("fd_datasync", STDIO_ONLY),
    ("fd_fdstat_get", |store, env| {
        Function::new_typed_with_env(store, env, |mut env: Env<'_>, fd: u32, out: u32| {
            if fd > 2 {
                return EBADF;
            }
            // filetype character device (2), no flags, no rights beyond read/write.
            let mut stat = [0u8; 24];
            stat[0] = 2;
            stat[8..16].copy_from_slice(&(FD_READ | FD_WRITE).to_le_bytes());
            with_view(&mut env, |view| errno(view.write(u64::from(out), &stat).map_err(drop)))
        })
    }),
    ("fd_filestat_get", |store, env| {
        Function::new_typed_with_env(store, env, |mut env: Env<'_>, fd: u32, out: u32| {
            if fd > 2 {
                return EBADF;
            }
            let mut stat = [0u8; 64];
            stat[16] = 2;
            with_view(&mut env, |view| errno(view.write(u64::from(out), &stat).map_err(drop)))
        })
    }),
    ("fd_seek", |store, _| Function::new_typed(store, |fd: u32, _: i64, _: u32, _: u32| stdio_or(fd, ESPIPE))),
    ("fd_tell", |store, _| Function::new_typed(store, |fd: u32, _: u32| stdio_or(fd, ESPIPE))),
    ("fd_fdstat_set_flags", |store, _| Function::new_typed(store, |fd: u32, _: u32| stdio_or(fd, ENOTSUP))),
    ("fd_fdstat_set_rights", |store, _| Function::new_typed(store, |fd: u32, _: i64, _: i64| stdio_or(fd, ENOTSUP))),
    ("fd_prestat_get", |store, _| Function::new_typed(store, |_: u32, _: u32| EBADF)),
    ("fd_prestat_dir_name", |store, _| Function::new_typed(store, |_: u32, _: u32, _: u32| EBADF)),
    ("fd_advise", |store, _| Function::new_typed(store, |_: u32, _: i64, _: i64, _: u32| EBADF)),
    ("fd_allocate", |store, _| Function::new_typed(store, |_: u32, _: i64, _: i64| EBADF)),
    ("fd_filestat_set_size", |store, _| Function::new_typed(store, |_: u32, _: i64| EBADF)),
    ("fd_filestat_set_times", |store, _| Function::new_typed(store, |_: u32, _: i64, _: i64, _: u32| EBADF)),
    ("fd_pread", NOT_SEEKABLE),
    ("fd_pwrite", NOT_SEEKABLE),
    ("fd_readdir", |store, _| Function::new_typed(store, |_: u32, _: u32, _: u32, _: i64, _: u32| EBADF)),
    ("fd_renumber", |store, _| Function::new_typed(store, |_: u32, _: u32| EBADF)),
    ("path_create_directory", NO_PATHS),
    ("path_remove_directory", NO_PATHS),
    ("path_unlink_file", NO_PATHS),
    ("path_filestat_get", |store, _| Function::new_typed(store, |_: u32, _: u32, _: u32, _: u32, _: u32| ENOTCAPABLE)),
    ("path_filestat_set_times", |store, _| {
        Function::new_typed(store, |_: u32, _: u32, _: u32, _: u32, _: i64, _: i64, _: u32| ENOTCAPABLE)
    }),
    ("path_link", |store, _| {
        Function::new_typed(store, |_: u32, _: u32, _: u32, _: u32, _: u32, _: u32, _: u32| ENOTCAPABLE)
    }),
    ("path_open", |store, _| {
        Function::new_typed(store, |_: u32, _: u32, _: u32, _: u32, _: u32, _: i64, _: i64, _: u32, _: u32| ENOTCAPABLE)
    }),
    ("path_readlink", NO_PATH_PAIRS),
    ("path_rename", NO_PATH_PAIRS),
    ("path_symlink", |store, _| Function::new_typed(store, |_: u32, _: u32, _: u32, _: u32, _: u32| ENOTCAPABLE)),
    ("poll_oneoff", |store, env| {
        Function::new_typed_with_env(
            store,
            env,
            |mut env: Env<'_>, subs: u32, events: u32, count: u32, written: u32| -> Result<i32, HostTrap> {
                if count > MAX_VECTORS {
                    return Ok(EINVAL);
                }
                charge_guest(&mut env, SUBSCRIPTION_POINTS * u64::from(count));
                let (data, store) = env.data_and_store_mut();
                let Some(memory) = data.memory.clone() else { return Ok(EFAULT) };
                let (userdata, wait) = match poll_oneoff(&memory.view(&store), subs, events, count, written) {
                    Poll::Done(answer) => return Ok(answer),
                    Poll::Sleep { userdata, wait } => (userdata, wait),
                };
                sleep(data.meter.as_ref(), wait)?;
                Ok(clock_fired(&memory.view(&store), events, written, userdata))
            },
        )
    }),
    ("proc_exit", |store, _| {
        Function::new_typed(store, |code: u32| -> Result<(), HostTrap> { Err(HostTrap::Exit(code)) })
    }),
    ("proc_raise", |store, _| {
        Function::new_typed(store, |signal: u32| -> Result<i32, HostTrap> { Err(HostTrap::Exit(128 + signal)) })
    }),
    ("sched_yield", |store, _| Function::new_typed(store, || SUCCESS)),
    ("sock_accept", |store, _| Function::new_typed(store, |_: u32, _: u32, _: u32| ENOTSUP)),
    ("sock_recv", |store, _| Function::new_typed(store, |_: u32, _: u32, _: u32, _: u32, _: u32, _: u32| ENOTSUP)),
    ("sock_send", |store, _| Function::new_typed(store, |_: u32, _: u32, _: u32, _: u32, _: u32| ENOTSUP)),
    ("sock_shutdown", |store, _| Function::new_typed(store, |_: u32, _: u32| ENOTSUP)),
];

/// `args_sizes_get`, `environ_sizes_get`.
const NO_ARGUMENTS_SIZES: Make = |store, env| {
    Function::new_typed_with_env(store, env, |mut env: Env<'_>, count: u32, size: u32| {
        with_view(&mut env, |view| match (write_u32(view, count, 0), write_u32(view, size, 0)) {
            (Ok(()), Ok(())) => SUCCESS,
            _ => EFAULT,
        })
    })
};

/// `args_get`, `environ_get`.
const NO_ARGUMENTS: Make = |store, _| Function::new_typed(store, |_: u32, _: u32| SUCCESS);

/// `fd_close`, `fd_sync`, `fd_datasync`.
const STDIO_ONLY: Make = |store, _| Function::new_typed(store, |fd: u32| stdio_or(fd, SUCCESS));

/// `fd_pread`, `fd_pwrite`.
const NOT_SEEKABLE: Make = |store, _| Function::new_typed(store, |_: u32, _: u32, _: u32, _: i64, _: u32| EBADF);

/// `path_create_directory`, `path_remove_directory`, `path_unlink_file`.
const NO_PATHS: Make = |store, _| Function::new_typed(store, |_: u32, _: u32, _: u32| ENOTCAPABLE);

/// `path_readlink`, `path_rename`.
const NO_PATH_PAIRS: Make =
    |store, _| Function::new_typed(store, |_: u32, _: u32, _: u32, _: u32, _: u32, _: u32| ENOTCAPABLE);

const FD_READ: u64 = 1 << 1;
const FD_WRITE: u64 = 1 << 6;

fn stdio_or(fd: u32, answer: i32) -> i32 {
    if fd <= 2 { answer } else { EBADF }
}

fn errno(result: Result<(), ()>) -> i32 {
    match result {
        Ok(()) => SUCCESS,
        Err(()) => EFAULT,
    }
}

fn monotonic_nanos() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    // Offset by one second so that "zero" is never a reading a guest sees.
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64 + 1_000_000_000
}

/// Charges the guest's budget `points` for work done on its behalf.
fn charge_guest(env: &mut Env<'_>, points: u64) {
    charge(env.data().meter.as_ref(), points);
}

fn with_view(env: &mut Env<'_>, f: impl FnOnce(&MemoryView<'_>) -> i32) -> i32 {
    let (data, store) = env.data_and_store_mut();
    match &data.memory {
        Some(memory) => f(&memory.view(&store)),
        None => EFAULT,
    }
}

fn in_bounds(view: &MemoryView<'_>, ptr: u32, len: u32) -> bool {
    u64::from(ptr) + u64::from(len) <= view.data_size()
}

fn write_u32(view: &MemoryView<'_>, ptr: u32, value: u32) -> Result<(), ()> {
    view.write(u64::from(ptr), &value.to_le_bytes()).map_err(drop)
}

fn write_u64(view: &MemoryView<'_>, ptr: u32, value: u64) -> Result<(), ()> {
    view.write(u64::from(ptr), &value.to_le_bytes()).map_err(drop)
}

fn read_u32(view: &MemoryView<'_>, ptr: u64) -> Result<u32, ()> {
    let mut bytes = [0u8; 4];
    view.read(ptr, &mut bytes).map_err(drop)?;
    Ok(u32::from_le_bytes(bytes))
}

fn read_u64(view: &MemoryView<'_>, ptr: u64) -> Result<u64, ()> {
    let mut bytes = [0u8; 8];
    view.read(ptr, &mut bytes).map_err(drop)?;
    Ok(u64::from_le_bytes(bytes))
}

/// Gathers the iovecs at `iovs` into `capture`, returning how many bytes the
/// guest wrote (all of them count as written, kept or not).
fn write_iovs(view: &MemoryView<'_>, capture: &mut Capture, iovs: u32, iovs_len: u32) -> Result<u32, ()> {
    let mut total: u32 = 0;
    let mut chunk = Vec::new();
    for i in 0..u64::from(iovs_len) {
        let at = u64::from(iovs) + i * 8;
        let buf = read_u32(view, at)?;
        let len = read_u32(view, at + 4)?;
        if !in_bounds(view, buf, len) {
            return Err(());
        }
        let room = CAPTURE_LIMIT.saturating_sub(capture.bytes.len()).min(len as usize);
        chunk.resize(room, 0);
        view.read(u64::from(buf), &mut chunk).map_err(drop)?;
        capture.push(&chunk);
        capture.dropped = capture.dropped.saturating_add(u64::from(len) - room as u64);
        total = total.checked_add(len).ok_or(())?;
    }
    Ok(total)
}

const SUBSCRIPTION_SIZE: u64 = 48;
const EVENT_SIZE: u64 = 32;
const CLOCK: u8 = 0;

/// What `poll_oneoff` does with its subscriptions.
enum Poll {
    /// It is done: the answer to give.
    Done(i32),
    /// The earliest clock subscription is due after `wait`.
    Sleep { userdata: u64, wait: Duration },
}

/// `poll_oneoff`'s subscriptions: file descriptor subscriptions fail with
/// `EBADF` at once (their events written); otherwise the earliest clock
/// subscription is what to wait for.
fn poll_oneoff(view: &MemoryView<'_>, subs: u32, events: u32, count: u32, written: u32) -> Poll {
    const ABSTIME: u16 = 1;
    if count == 0 {
        return Poll::Done(EINVAL);
    }
    let poll = || -> Result<Poll, ()> {
        let mut fd_events = 0;
        let mut earliest: Option<(u64, Duration)> = None;
        for i in 0..u64::from(count) {
            let at = u64::from(subs) + i * SUBSCRIPTION_SIZE;
            let userdata = read_u64(view, at)?;
            let mut tag = [0u8; 1];
            view.read(at + 8, &mut tag).map_err(drop)?;
            if tag[0] == CLOCK {
                let clock_id = read_u32(view, at + 16)?;
                let timeout = read_u64(view, at + 24)?;
                let mut flags = [0u8; 2];
                view.read(at + 40, &mut flags).map_err(drop)?;
                let now = match clock_id {
                    0 => SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64,
                    _ => monotonic_nanos(),
                };
                let wait = if u16::from_le_bytes(flags) & ABSTIME != 0 { timeout.saturating_sub(now) } else { timeout };
                let wait = Duration::from_nanos(wait);
                if earliest.is_none_or(|(_, best)| wait < best) {
                    earliest = Some((userdata, wait));
                }
            } else {
                write_event(view, u64::from(events) + fd_events * EVENT_SIZE, userdata, EBADF as u16, tag[0])?;
                fd_events += 1;
            }
        }
        if fd_events > 0 {
            return Ok(Poll::Done(errno(write_u32(view, written, fd_events as u32))));
        }
        let (userdata, wait) = earliest.ok_or(())?;
        Ok(Poll::Sleep { userdata, wait })
    };
    poll().unwrap_or(Poll::Done(EFAULT))
}

/// Writes one event of `poll_oneoff` at `at`.
fn write_event(view: &MemoryView<'_>, at: u64, userdata: u64, error: u16, kind: u8) -> Result<(), ()> {
    let mut event = [0u8; EVENT_SIZE as usize];
    event[0..8].copy_from_slice(&userdata.to_le_bytes());
    event[8..10].copy_from_slice(&error.to_le_bytes());
    event[10] = kind;
    view.write(at, &event).map_err(drop)
}

/// Answers `poll_oneoff` with its clock subscription `userdata` fired.
fn clock_fired(view: &MemoryView<'_>, events: u32, written: u32, userdata: u64) -> i32 {
    match write_event(view, u64::from(events), userdata, 0, CLOCK) {
        Ok(()) => errno(write_u32(view, written, 1)),
        Err(()) => EFAULT,
    }
}

/// Sleeps for `wait`, in slices of at most [`SLEEP_SLICE`] and never past
/// the run's deadline, charging the budget a point per nanosecond slept. A
/// guest left with no points, or past the deadline, stops.
fn sleep(meter: Option<&Meter>, wait: Duration) -> Result<(), HostTrap> {
    let started = Instant::now();
    loop {
        let left = wait.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Ok(());
        }
        let slice = left.min(SLEEP_SLICE).min(deadline::time_left().unwrap_or(Duration::MAX));
        let before = Instant::now();
        std::thread::sleep(slice);
        charge(meter, u64::try_from(before.elapsed().as_nanos()).unwrap_or(u64::MAX));
        if let Some(meter) = meter
            && meter.out_of_time()
        {
            return Err(HostTrap::OutOfTime);
        }
    }
}
