//! The commands, one module each, and what they share: reading and writing
//! `.scale` files.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use scale_func::{Language, ScaleFunc};

use crate::display::{Size, is_scale_file};
use crate::wasm_info;

pub mod build;
pub mod export;
pub mod inspect;
pub mod new;
pub mod run;
pub mod runtime_args;
pub mod serve;

/// `scale fn ...`
#[derive(Debug, Subcommand)]
pub enum FunctionCommand {
    /// Make a new function folder: a hello function, its unit tests and a README.
    New(new::Args),
    /// Build a function folder (a Go module or a Rust cdylib crate) into a .scale file.
    Build(build::Args),
    /// Pack a compiled .wasm module into a .scale file.
    Export(export::Args),
    /// Show what a .scale file holds: metadata, size, checksum, exports and imports.
    Inspect(inspect::Args),
}

impl FunctionCommand {
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            FunctionCommand::New(args) => new::run(args),
            FunctionCommand::Build(args) => build::run(args),
            FunctionCommand::Export(args) => export::run(args),
            FunctionCommand::Inspect(args) => inspect::run(args),
        }
    }
}

/// The languages a function can be written in, as command-line values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// Go, built with the standard Go toolchain (1.24 or newer).
    Go,
    /// Go, built with TinyGo (untested).
    #[value(name = "tinygo")]
    TinyGo,
    /// Rust, built with cargo.
    Rust,
}

impl From<Lang> for Language {
    fn from(lang: Lang) -> Language {
        match lang {
            Lang::Go => Language::Go,
            Lang::TinyGo => Language::TinyGo,
            Lang::Rust => Language::Rust,
        }
    }
}

/// Reads and decodes a `.scale` file; the error names the file and says
/// what is wrong with it.
pub fn read_scale(path: &Path) -> anyhow::Result<ScaleFunc> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    ScaleFunc::decode(&bytes).with_context(|| format!("cannot load {}", path.display()))
}

/// Checks a name and a tag before a slow build, so a bad one fails at once.
pub fn check_name_and_tag(name: Option<&str>, tag: &str) -> anyhow::Result<()> {
    let name = name.unwrap_or("placeholder");
    // The 8-byte module header is the smallest function `ScaleFunc::new` accepts.
    let header = scale_func::WASM_HEADER.to_vec();
    ScaleFunc::new(name, tag, scale_build::http_signature(), Language::Rust, header)?;
    Ok(())
}

/// Where a command writes its `.scale` file: `--output`, or `<name>.scale`
/// in the current directory.
pub fn output_path(output: Option<PathBuf>, func: &ScaleFunc) -> PathBuf {
    output.unwrap_or_else(|| PathBuf::from(format!("{}.scale", func.name())))
}

/// Writes `func` to `path` and says so on standard error.
pub fn write_scale(func: &ScaleFunc, path: &Path) -> anyhow::Result<()> {
    if path.is_dir() {
        anyhow::bail!("{} is a directory; give the path of the .scale file to write", path.display());
    }
    let bytes = func.encode();
    std::fs::write(path, &bytes).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("wrote {} ({}, sha256 {})", path.display(), Size(bytes.len() as u64), func.checksum_hex());
    if let Ok(info) = wasm_info::read(func.function()) {
        let missing = info.missing_exports();
        if !missing.is_empty() {
            eprintln!(
                "warning: the module does not export {}, so the runtime will refuse it (see docs/abi.md); \
                 a Rust function needs #[scale_guest::function]",
                missing.join(", ")
            );
        }
    }
    Ok(())
}

/// Reads a `.wasm` file, refusing `.scale` files with a hint.
pub fn read_wasm(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if is_scale_file(&bytes) {
        anyhow::bail!("{} is already a .scale file (see `scale fn inspect`), not a .wasm module", path.display());
    }
    Ok(bytes)
}
