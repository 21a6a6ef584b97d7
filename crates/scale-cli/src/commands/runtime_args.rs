//! The runtime settings `run` and `serve` share.

use std::path::PathBuf;

use scale_func::ScaleFunc;
use scale_runtime::{Runtime, RuntimeBuilder};

#[derive(Debug, clap::Args)]
pub struct RuntimeArgs {
    /// The memory limit of each function instance, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = scale_runtime::DEFAULT_MEMORY_LIMIT >> 20)]
    memory_limit: u64,
    /// Stop a function after this many wasm operations per call [default: no limit].
    #[arg(long, value_name = "OPERATIONS")]
    cpu_budget: Option<u64>,
    /// Keep compiled modules in this directory, to start faster next time.
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
}

impl RuntimeArgs {
    /// A runtime builder for `functions` with these settings.
    pub fn builder(&self, functions: Vec<ScaleFunc>) -> RuntimeBuilder {
        let mut builder =
            Runtime::builder().functions(functions).memory_limit(self.memory_limit.saturating_mul(1 << 20));
        if let Some(budget) = self.cpu_budget {
            builder = builder.cpu_budget(budget);
        }
        if let Some(dir) = &self.cache_dir {
            builder = builder.cache_dir(dir);
        }
        builder
    }
}
