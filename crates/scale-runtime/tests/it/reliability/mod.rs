//! Reliability: fault injection and soak, concurrency, and sandbox escapes
//! (docs/reliability.md). CI runs reduced counts; `cargo xtask soak` runs
//! the full ones through the environment variables below.

mod concurrency;
mod escape;
mod soak;

/// Held by the tests that measure the resident set or use a lot of memory,
/// so that their measurements are not disturbed by each other.
pub static MEMORY_HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes [`MEMORY_HEAVY`], whether or not another test panicked holding it.
pub fn memory_heavy() -> std::sync::MutexGuard<'static, ()> {
    MEMORY_HEAVY.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The number in environment variable `var`, or `default` when it is unset.
pub fn count_from_env(var: &str, default: usize) -> usize {
    match std::env::var(var) {
        Ok(text) => text.trim().parse().unwrap_or_else(|err| panic!("{var}={text:?} is not a count: {err}")),
        Err(_) => default,
    }
}

/// Whether the full-scale runs were asked for (by `cargo xtask soak`).
pub fn full_scale(var: &str) -> bool {
    std::env::var_os(var).is_some()
}

/// This process's resident set size, in KiB (`VmRSS` of /proc/self/status).
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status is readable");
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).expect("a VmRSS line");
    line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).expect("VmRSS in kB")
}

/// A small deterministic random number generator (xorshift64*), so that a
/// failing run can be replayed from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..bound`.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    /// Random bytes, `0..max_len` of them.
    pub fn bytes(&mut self, max_len: u64) -> Vec<u8> {
        let len = self.below(max_len) as usize;
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}
