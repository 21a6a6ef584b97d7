//! `scale`: build, pack, inspect and run Scale Functions.
//!
//! One module per command under `commands/`; each defines its clap `Args`
//! and a `run` function. A new command (such as `serve`) is a new module,
//! a new variant of [`Command`] and one line in [`main`].
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;
mod display;
mod wasm_info;

/// Build, pack, inspect and run Scale Functions (.scale files).
#[derive(Debug, Parser)]
#[command(name = "scale", version, propagate_version = true, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with function files: build, export (pack a .wasm), inspect.
    #[command(name = "fn", subcommand)]
    Function(commands::FunctionCommand),
    /// Run one or more .scale files as a chain on one request and print the response.
    Run(commands::run::Args),
    /// Serve .scale files (or a built-in hello function) over HTTP.
    Serve(commands::serve::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Function(command) => command.run(),
        Command::Run(args) => commands::run::run(args),
        Command::Serve(args) => commands::serve::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            report(&err);
            ExitCode::FAILURE
        }
    }
}

/// Prints an error and its causes to standard error, one line each, and
/// the [`Hint`] attached to it, if any, last.
fn report(err: &anyhow::Error) {
    let hint = err.downcast_ref::<Hint>().map(ToString::to_string);
    let mut lines: Vec<String> = Vec::new();
    for line in err.chain().map(ToString::to_string) {
        // Some errors print their source in their own message too; say it once.
        let repeated = lines.last().is_some_and(|last| last.ends_with(&line));
        if Some(&line) != hint.as_ref() && !repeated {
            lines.push(line);
        }
    }
    let mut stderr = std::io::stderr().lock();
    for (i, line) in lines.iter().enumerate() {
        let _ = writeln!(stderr, "{}{line}", if i == 0 { "error: " } else { "  caused by: " });
    }
    if let Some(hint) = hint {
        let _ = writeln!(stderr, "hint: {hint}");
    }
}

/// What the user can do about an error, attached with `.context(Hint(..))`
/// and printed after it.
#[derive(Debug)]
pub struct Hint(pub &'static str);

impl std::fmt::Display for Hint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}
