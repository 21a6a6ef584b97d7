//! What a request's run did, for the server's logs and metrics.

use std::time::Duration;

use scale_runtime::Error;

/// What running the chain did for one request: a response extension on every
/// answer whose request reached the chain (not on 413, 408 or 400 answers,
/// whose requests never did). A server reads it for its metrics and access
/// log; clients never see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// How long the run took: taking the instances, running the chain, and
    /// turning its context into the response.
    pub duration: Duration,
    /// Why the run failed, when it did.
    pub failure: Option<RunFailure>,
}

/// Why a run failed, and in which function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFailure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// The function it happened in, when it happened in one.
    pub function: Option<String>,
}

/// The kinds of run failure, as metrics count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// A function returned an error.
    Guest,
    /// A function panicked.
    Panic,
    /// A function trapped, or broke the ABI.
    Trap,
    /// A function hit its memory limit.
    Memory,
    /// The run used up its CPU budget.
    Budget,
    /// The run passed its deadline.
    Deadline,
    /// A native handler or downstream service failed.
    Handler,
    /// No instance could be made.
    Instantiation,
    /// The chain answered with a response that is not valid HTTP.
    InvalidResponse,
}

impl FailureKind {
    /// The kind's name in metrics labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Guest => "guest_error",
            FailureKind::Panic => "panic",
            FailureKind::Trap => "trap",
            FailureKind::Memory => "memory",
            FailureKind::Budget => "budget",
            FailureKind::Deadline => "deadline",
            FailureKind::Handler => "handler",
            FailureKind::Instantiation => "instantiation",
            FailureKind::InvalidResponse => "invalid_response",
        }
    }

    /// Every kind, in a stable order.
    pub const ALL: [FailureKind; 9] = [
        FailureKind::Guest,
        FailureKind::Panic,
        FailureKind::Trap,
        FailureKind::Memory,
        FailureKind::Budget,
        FailureKind::Deadline,
        FailureKind::Handler,
        FailureKind::Instantiation,
        FailureKind::InvalidResponse,
    ];
}

impl RunFailure {
    /// The failure a runtime error is.
    pub fn of(err: &Error) -> Self {
        let kind = match err {
            Error::Guest { .. } => FailureKind::Guest,
            Error::Panic { .. } => FailureKind::Panic,
            Error::MemoryLimit { .. } => FailureKind::Memory,
            Error::CpuBudget { .. } => FailureKind::Budget,
            Error::Deadline { .. } => FailureKind::Deadline,
            Error::Handler { .. } => FailureKind::Handler,
            Error::Instantiation { .. } | Error::Runner { .. } => FailureKind::Instantiation,
            _ => FailureKind::Trap,
        };
        Self { kind, function: err.function().map(str::to_owned) }
    }
}
