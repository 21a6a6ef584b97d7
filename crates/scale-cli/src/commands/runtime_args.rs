//! The runtime settings `run` and `serve` share.

use std::path::PathBuf;

use scale_func::ScaleFunc;
use scale_runtime::{Runtime, RuntimeBuilder};

#[derive(Debug, clap::Args)]
pub struct RuntimeArgs {
    /// The memory limit of each function instance, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = scale_runtime::DEFAULT_MEMORY_LIMIT >> 20)]
    memory_limit: u64,
    /// Stop a function after this many wasm operations per call, or never
    /// with `none` [default: none for `run`, 1000000000 for `serve`].
    #[arg(long, value_name = "OPERATIONS|none", value_parser = parse_budget)]
    cpu_budget: Option<Budget>,
    /// Keep compiled modules in this directory, to start faster next time.
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
}

/// A `--cpu-budget` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    Operations(u64),
    Unlimited,
}

fn parse_budget(text: &str) -> Result<Budget, String> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(Budget::Unlimited);
    }
    match text.parse::<u64>() {
        Ok(0) => Err("a budget of 0 operations stops every function; use `none` for no budget".into()),
        Ok(operations) => Ok(Budget::Operations(operations)),
        Err(_) => Err(format!("expected a number of operations or `none`, got {text:?}")),
    }
}

impl RuntimeArgs {
    /// A runtime builder for `functions` with these settings; `default_budget`
    /// applies when `--cpu-budget` was not given.
    pub fn builder(&self, functions: Vec<ScaleFunc>, default_budget: Budget) -> RuntimeBuilder {
        let mut builder =
            Runtime::builder().functions(functions).memory_limit(self.memory_limit.saturating_mul(1 << 20));
        if let Budget::Operations(operations) = self.cpu_budget.unwrap_or(default_budget) {
            builder = builder.cpu_budget(operations);
        }
        if let Some(dir) = &self.cache_dir {
            builder = builder.cache_dir(dir);
        }
        builder
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_parse() {
        assert_eq!(parse_budget("1000"), Ok(Budget::Operations(1000)));
        assert_eq!(parse_budget("none"), Ok(Budget::Unlimited));
        assert_eq!(parse_budget("NONE"), Ok(Budget::Unlimited));
        assert!(parse_budget("0").unwrap_err().contains("none"));
        assert!(parse_budget("-5").is_err());
        assert!(parse_budget("ten").is_err());
    }
}
