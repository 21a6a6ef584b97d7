//! The runtime's error type.

use std::fmt;

/// Everything that can go wrong loading or running functions.
///
/// Variants that come from a guest name the function (its name in the
/// `.scale` file). A run that fails with any variant but [`Error::Guest`],
/// [`Error::Handler`] and [`Error::Runner`] discards the guest instance
/// involved; the runtime stays usable and the next run gets a fresh one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `Runtime::new` was given no functions.
    #[error("a runtime needs at least one function")]
    NoFunctions,

    /// The chain has more functions than a runtime runs
    /// ([`MAX_CHAIN_LENGTH`](crate::MAX_CHAIN_LENGTH)): each function's `next`
    /// nests one level deeper on the host's stack.
    #[error("a chain of {functions} functions is longer than the {max} a runtime runs")]
    ChainTooLong {
        /// How many functions the runtime was given.
        functions: usize,
        /// The most a runtime accepts.
        max: usize,
    },

    /// The module is not one this runtime can run: it failed to compile, an
    /// export is missing or mistyped, it imports something the host does
    /// not provide, it has more than one memory, or what its memory and
    /// tables declare at least does not fit the limits.
    #[error("function {function:?}: invalid module: {reason}")]
    InvalidModule {
        /// The function's name.
        function: String,
        /// What is wrong, naming the export or import.
        reason: String,
    },

    /// The function was built against another signature than the runtime's.
    #[error("function {function:?} was built for signature {found:?}, but this runtime runs {expected:?}")]
    SignatureMismatch {
        /// The function's name.
        function: String,
        /// The runtime's signature, `name@version`.
        expected: String,
        /// The function's signature, `name@version`.
        found: String,
    },

    /// A fresh instance of the function could not be made (for example it
    /// speaks an ABI version this host does not, or wasmer could not set up
    /// its memory). A start function or `_initialize` that traps, runs out
    /// of budget or passes the deadline is reported as that trap,
    /// [`Error::CpuBudget`] or [`Error::Deadline`].
    #[error("function {function:?}: instantiation failed: {reason}")]
    Instantiation {
        /// The function's name.
        function: String,
        /// Why.
        reason: String,
    },

    /// The function returned an error.
    #[error("function {function:?} failed: {message}")]
    Guest {
        /// The function's name.
        function: String,
        /// The guest's message.
        message: String,
    },

    /// The function panicked (a Rust panic, or a Go panic or exit).
    #[error("function {function:?} panicked: {message}")]
    Panic {
        /// The function's name.
        function: String,
        /// The panic message, when the guest reported one.
        message: String,
    },

    /// The function trapped for another reason (`unreachable`, an
    /// out-of-bounds access, a stack overflow).
    #[error("function {function:?} trapped: {trap}")]
    Trap {
        /// The function's name.
        function: String,
        /// The trap's description.
        trap: String,
    },

    /// The function broke the ABI: bad pointers or lengths, or bytes that do
    /// not decode.
    #[error("function {function:?} returned malformed output: {what}")]
    MalformedOutput {
        /// The function's name.
        function: String,
        /// What was wrong.
        what: String,
    },

    /// The function needed more memory than the limit allows.
    #[error("function {function:?} exceeded its memory limit of {limit_bytes} bytes")]
    MemoryLimit {
        /// The function's name.
        function: String,
        /// The limit, in bytes.
        limit_bytes: u64,
    },

    /// The function used up its CPU budget for the run.
    #[error("function {function:?} exhausted its CPU budget of {budget} operations")]
    CpuBudget {
        /// The function's name.
        function: String,
        /// The budget, in wasm operations.
        budget: u64,
    },

    /// The run was still going at its deadline
    /// ([`RuntimeBuilder::deadline`](crate::RuntimeBuilder::deadline)); the
    /// function named is the one that was running.
    #[error("function {function:?} was still running at the run's deadline of {deadline:?}")]
    Deadline {
        /// The function's name.
        function: String,
        /// The deadline, from the start of the run.
        deadline: std::time::Duration,
    },

    /// A native handler returned an error (and the guest that called `next`
    /// passed it on).
    #[error("native handler {index} failed: {source}")]
    Handler {
        /// The handler's position among the instance's handlers.
        index: usize,
        /// Its error.
        #[source]
        source: HandlerError,
    },

    /// The run was abandoned: the future of
    /// [`Instance::run_async`](crate::Instance::run_async) was dropped before
    /// the run ended. The guest instances of that run are discarded, never
    /// pooled; the instance keeps no chain, and every later run on it fails
    /// with this error.
    #[error("the run was abandoned before it ended")]
    Abandoned,

    /// [`Instance::run_async`](crate::Instance::run_async) found no thread
    /// to run the chain on: no runner was idle and the operating system
    /// refused a new one. The instance is unchanged.
    #[error("no thread to run the chain on: {source}")]
    Runner {
        /// Why the thread could not start.
        #[source]
        source: std::io::Error,
    },

    /// The on-disk module cache could not be used. Only raised when the
    /// cache directory cannot be created; unreadable or corrupt entries are
    /// recompiled instead.
    #[error("module cache at {path}: {source}")]
    Cache {
        /// The cache directory.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The name of the function the error is about, if any.
    pub fn function(&self) -> Option<&str> {
        match self {
            Error::InvalidModule { function, .. }
            | Error::SignatureMismatch { function, .. }
            | Error::Instantiation { function, .. }
            | Error::Guest { function, .. }
            | Error::Panic { function, .. }
            | Error::Trap { function, .. }
            | Error::MalformedOutput { function, .. }
            | Error::MemoryLimit { function, .. }
            | Error::CpuBudget { function, .. }
            | Error::Deadline { function, .. } => Some(function),
            Error::NoFunctions
            | Error::ChainTooLong { .. }
            | Error::Handler { .. }
            | Error::Abandoned
            | Error::Runner { .. }
            | Error::Cache { .. } => None,
        }
    }

    /// Whether the guest instance that produced this error must be thrown
    /// away (it trapped or broke the ABI) rather than reused.
    pub(crate) fn poisons_instance(&self) -> bool {
        matches!(
            self,
            Error::Panic { .. }
                | Error::Trap { .. }
                | Error::MalformedOutput { .. }
                | Error::MemoryLimit { .. }
                | Error::CpuBudget { .. }
                | Error::Deadline { .. }
                | Error::Abandoned
        )
    }
}

/// The error a native handler returns. Build one from a message or from any
/// error: `Err("not found".into())`, `Err(HandlerError::new(io_error))`.
pub struct HandlerError {
    inner: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl HandlerError {
    /// Wraps any error.
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self { inner: error.into() }
    }

    /// The wrapped error.
    pub fn into_inner(self) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self.inner
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl std::error::Error for HandlerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.source()
    }
}

impl From<&str> for HandlerError {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

impl From<String> for HandlerError {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<std::io::Error> for HandlerError {
    fn from(error: std::io::Error) -> Self {
        Self::new(error)
    }
}
