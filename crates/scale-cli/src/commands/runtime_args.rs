//! The runtime settings `run` and `serve` share.

use std::path::PathBuf;
use std::time::Duration;

use scale_func::ScaleFunc;
use scale_runtime::{Runtime, RuntimeBuilder};

use crate::commands::serve::config::Limits;

#[derive(Debug, clap::Args)]
pub struct RuntimeArgs {
    /// The memory limit of each function instance, in MiB [default: 64].
    #[arg(long, value_name = "MIB")]
    memory_limit: Option<u64>,
    /// The most table elements each function instance may have (8 bytes
    /// each, counted in the memory limit) [default: 65536, or an eighth of
    /// the memory limit when that is less].
    #[arg(long, value_name = "ELEMENTS")]
    table_limit: Option<u32>,
    /// Stop a run after this many wasm operations, all functions of the
    /// chain together (host calls and sleeps count too), or never with
    /// `none` [default: none for `run`, 1000000000 for `serve`].
    #[arg(long, value_name = "OPERATIONS|none", value_parser = parse_budget)]
    cpu_budget: Option<Budget>,
    /// Stop a run still going after this long (`250ms`, `10s`, `2m`; a bare
    /// number is seconds), or never with `none` [default: none for `run`,
    /// 10s for `serve`].
    #[arg(long, value_name = "DURATION|none", value_parser = parse_deadline)]
    deadline: Option<Deadline>,
    /// Keep compiled modules in this directory, so the next start skips
    /// compiling [default: $SCALE_CACHE_DIR, else scale/modules in your
    /// cache directory, such as ~/.cache/scale/modules].
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    cache_dir: Option<PathBuf>,
    /// Compile every function, keeping nothing on disk.
    #[arg(long)]
    no_cache: bool,
}

/// A `--cpu-budget` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    Operations(u64),
    Unlimited,
}

pub fn parse_budget(text: &str) -> Result<Budget, String> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(Budget::Unlimited);
    }
    match text.parse::<u64>() {
        Ok(0) => Err("a budget of 0 operations stops every function; use `none` for no budget".into()),
        Ok(operations) => Ok(Budget::Operations(operations)),
        Err(_) => Err(format!("expected a number of operations or `none`, got {text:?}")),
    }
}

/// A `--deadline` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    After(Duration),
    Never,
}

pub fn parse_deadline(text: &str) -> Result<Deadline, String> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(Deadline::Never);
    }
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        _ => return Err(format!("expected a duration such as 250ms, 10s or 2m, or `none`, got {text:?}")),
    };
    let seconds = number
        .parse::<f64>()
        .map_err(|_| format!("expected a duration such as 250ms, 10s or 2m, or `none`, got {text:?}"))?
        * scale;
    match Duration::try_from_secs_f64(seconds) {
        Ok(duration) if !duration.is_zero() => Ok(Deadline::After(duration)),
        Ok(_) => Err("a deadline of 0 stops every run; use `none` for no deadline".into()),
        Err(_) => Err(format!("{text:?} is not a duration this can wait")),
    }
}

/// The settings a command uses where the flags are not given.
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    pub budget: Budget,
    pub deadline: Deadline,
}

impl RuntimeArgs {
    /// A runtime builder for `functions` with these settings, and
    /// `defaults` where a flag was not given.
    pub fn builder(&self, functions: Vec<ScaleFunc>, defaults: Defaults) -> RuntimeBuilder {
        let mib = self.memory_limit.unwrap_or(scale_runtime::DEFAULT_MEMORY_LIMIT >> 20);
        let mut builder = Runtime::builder().functions(functions).memory_limit(mib.saturating_mul(1 << 20));
        if let Some(elements) = self.table_limit {
            builder = builder.table_limit(elements);
        }
        if let Budget::Operations(operations) = self.cpu_budget.unwrap_or(defaults.budget) {
            builder = builder.cpu_budget(operations);
        }
        if let Deadline::After(limit) = self.deadline.unwrap_or(defaults.deadline) {
            builder = builder.deadline(limit);
        }
        self.cache(builder)
    }

    /// `builder` with the module cache these flags choose.
    pub fn cache(&self, builder: RuntimeBuilder) -> RuntimeBuilder {
        match (&self.cache_dir, self.no_cache) {
            (Some(dir), _) => builder.cache_dir(dir),
            (None, true) => builder,
            (None, false) => builder.default_cache(),
        }
    }

    /// The limit flags given, by name: a configuration file sets limits
    /// itself, so `serve --config` refuses them.
    pub fn limit_flags(&self) -> Vec<&'static str> {
        let given = [
            (self.memory_limit.is_some(), "--memory-limit"),
            (self.table_limit.is_some(), "--table-limit"),
            (self.cpu_budget.is_some(), "--cpu-budget"),
            (self.deadline.is_some(), "--deadline"),
        ];
        given.into_iter().filter_map(|(given, flag)| given.then_some(flag)).collect()
    }

    /// The limits of a route served from these flags, with `defaults` where
    /// a flag was not given.
    pub fn limits(&self, defaults: Defaults, body_limit: usize) -> Limits {
        Limits {
            memory_limit: self.memory_limit.unwrap_or(scale_runtime::DEFAULT_MEMORY_LIMIT >> 20),
            table_limit: self.table_limit,
            cpu_budget: self.cpu_budget.unwrap_or(defaults.budget),
            deadline: self.deadline.unwrap_or(defaults.deadline),
            body_limit,
            isolate: false,
        }
    }
}

/// A runtime builder for `functions` with a route's `limits`.
pub fn limited(functions: Vec<ScaleFunc>, limits: &Limits) -> RuntimeBuilder {
    let mut builder = Runtime::builder().functions(functions).memory_limit(limits.memory_limit.saturating_mul(1 << 20));
    if let Some(elements) = limits.table_limit {
        builder = builder.table_limit(elements);
    }
    if let Budget::Operations(operations) = limits.cpu_budget {
        builder = builder.cpu_budget(operations);
    }
    if let Deadline::After(limit) = limits.deadline {
        builder = builder.deadline(limit);
    }
    if limits.isolate {
        builder = builder.isolation(scale_runtime::Isolation::PerRun);
    }
    builder
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

    #[test]
    fn deadlines_parse() {
        assert_eq!(parse_deadline("250ms"), Ok(Deadline::After(Duration::from_millis(250))));
        assert_eq!(parse_deadline("10s"), Ok(Deadline::After(Duration::from_secs(10))));
        assert_eq!(parse_deadline("1.5"), Ok(Deadline::After(Duration::from_millis(1500))));
        assert_eq!(parse_deadline("2m"), Ok(Deadline::After(Duration::from_secs(120))));
        assert_eq!(parse_deadline("none"), Ok(Deadline::Never));
        assert!(parse_deadline("0s").unwrap_err().contains("none"));
        for bad in ["", "ten", "5h", "-1s", "1e400", "s"] {
            assert!(parse_deadline(bad).is_err(), "{bad:?}");
        }
    }
}
