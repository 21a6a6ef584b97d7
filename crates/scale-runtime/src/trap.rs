//! Traps out of guests: the reasons host functions stop a guest, and the
//! classification of a trap into the [`Error`] that explains it.

use wasmer::RuntimeError;

use crate::deadline;
use crate::error::Error;

/// Why a host function stopped the guest. Raised as a wasm trap and
/// recognised again when the trap reaches the host.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HostTrap {
    /// The guest handed the host bad pointers or bytes.
    #[error("{0}")]
    Malformed(String),
    /// The guest called `proc_exit` (or `proc_raise`).
    #[error("the guest exited with code {0}")]
    Exit(u32),
    /// The run's budget or deadline ran out while the host worked for the
    /// guest (the rest of the chain, through `next`). The guest's meter
    /// notes it; this only stops the guest.
    #[error("the run's budget or deadline ran out")]
    OutOfTime,
    /// The run was abandoned while a native handler was awaited: the guest
    /// stops, and so does every guest of the chain above it.
    #[error("the run was abandoned")]
    Abandoned,
}

/// What the host knows of a guest when a trap comes out of it.
pub(crate) struct TrapContext {
    /// The function's name.
    pub function: String,
    /// What the guest reported through `env.panic` during the run.
    pub panic_message: Option<String>,
    /// What the guest wrote to standard error during the run, printable.
    pub stderr: String,
    /// Whether the guest's metering noted that it ran out of points.
    pub out_of_points: bool,
    /// Whether a table's growth was refused by the table limit (as the
    /// metering noted it, or, unmetered, because a capped table is full).
    pub table_refused: bool,
    /// Whether a memory's growth was refused by the memory limit.
    pub memory_refused: bool,
    /// The runtime's CPU budget, if it has one.
    pub cpu_budget: Option<u64>,
    /// The runtime's memory limit, in bytes.
    pub memory_limit: u64,
}

/// The error that explains `trap`.
pub(crate) fn classify(trap: RuntimeError, context: TrapContext) -> Error {
    let TrapContext { function, panic_message, stderr, out_of_points, table_refused, memory_refused, .. } = context;
    let mut out_of_time = out_of_points;
    let trap = match trap.downcast::<HostTrap>() {
        Ok(HostTrap::Malformed(what)) => return Error::MalformedOutput { function, what },
        Ok(HostTrap::Abandoned) => return Error::Abandoned,
        Ok(HostTrap::OutOfTime) => {
            out_of_time = true;
            RuntimeError::new("the run's budget or deadline ran out")
        }
        Ok(HostTrap::Exit(code)) => {
            let message = panic_message.unwrap_or_else(|| match stderr.trim() {
                "" => format!("exited with code {code}"),
                stderr => format!("exited with code {code}: {}", tail(stderr)),
            });
            return Error::Panic { function, message };
        }
        Err(trap) => trap,
    };
    if out_of_time {
        // The deadline of the run on this thread: this runtime's, or that
        // of a run this one is nested in (from a native handler).
        if let Some(deadline) = deadline::passed_limit() {
            return Error::Deadline { function, deadline };
        }
        return Error::CpuBudget { function, budget: context.cpu_budget.unwrap_or(u64::MAX) };
    }
    if memory_refused || table_refused {
        return Error::MemoryLimit { function, limit_bytes: context.memory_limit };
    }
    if let Some(message) = panic_message {
        return Error::Panic { function, message };
    }
    // Go's runtime prints a fatal error or an unrecovered panic to standard
    // error and then aborts with `unreachable`.
    let aborted = trap.clone().to_trap() == Some(wasmer::sys::vm::TrapCode::UnreachableCodeReached);
    match stderr.trim() {
        stderr if aborted && !stderr.is_empty() => Error::Panic { function, message: tail(stderr).to_string() },
        _ => Error::Trap { function, trap: trap.message() },
    }
}

/// `text` with every control character but newline and tab written as an
/// escape (`\u{1b}`): guest text that reaches logs and terminals cannot
/// move the cursor, recolour or retitle them.
pub(crate) fn printable(text: &str) -> String {
    if !text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// The last few KiB of a guest's standard error, on a character boundary.
fn tail(text: &str) -> &str {
    const KEEP: usize = 4096;
    let mut start = text.len().saturating_sub(KEEP);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}
