//! `scale fn build <dir>`

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::bail;
use scale_build::{BuildError, GoBuild, GoCompiler, RustBuild, RustTarget};

use crate::Hint;
use crate::commands::{Lang, check_name_and_tag, output_path, write_scale};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The function's folder: a Go module (go.mod) or a Rust cdylib crate (Cargo.toml).
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// The language [default: go if the folder has a go.mod, rust if it has a Cargo.toml].
    #[arg(long, short = 'l', value_enum)]
    lang: Option<Lang>,
    /// The function's name: 1 to 255 of A-Z a-z 0-9 . - [default: the Go folder's name or the Rust package's name].
    #[arg(long, short = 'n')]
    name: Option<String>,
    /// The function's tag.
    #[arg(long, short = 't', default_value = "latest")]
    tag: String,
    /// Where to write the .scale file [default: <name>.scale].
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
    /// Rust only: build for wasm32-wasip1 instead of wasm32-unknown-unknown.
    #[arg(long)]
    wasi: bool,
    /// Rust only: cargo's target directory [default: <dir>/target].
    #[arg(long, value_name = "DIR")]
    target_dir: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if !args.dir.is_dir() {
        bail!("{} is not a directory: give the folder of a Go module or a Rust crate", args.dir.display());
    }
    let lang = match args.lang {
        Some(lang) => lang,
        None => detect(&args.dir)?,
    };
    if lang != Lang::Rust && (args.wasi || args.target_dir.is_some()) {
        bail!("--wasi and --target-dir apply to Rust functions only; Go functions are always built for wasip1");
    }
    // A Go function is named after its folder by default; check that name now rather than after the build.
    let folder_name: Option<String> = match (lang, &args.name) {
        (Lang::Go | Lang::TinyGo, None) => {
            std::path::absolute(&args.dir)?.file_name().map(|n| n.to_string_lossy().into())
        }
        _ => None,
    };
    let name: Option<&str> = args.name.as_deref().or(folder_name.as_deref());
    if let Err(err) = check_name_and_tag(name, &args.tag) {
        let err = err.context("refusing to build");
        return Err(if folder_name.is_some() { err.context(Hint(FOLDER_NAME_HINT)) } else { err });
    }
    let started = Instant::now();
    let built = match lang {
        Lang::Go | Lang::TinyGo => build_go(&args, lang),
        Lang::Rust => build_rust(&args),
    };
    let func = built.map_err(|err| explain(err, &args.dir))?;
    eprintln!("built {} in {:.1} s", func.name(), started.elapsed().as_secs_f64());
    write_scale(&func, &output_path(args.output, &func))
}

const FOLDER_NAME_HINT: &str = "a Go function is named after its folder; choose another name with --name";

/// The language of a function folder, from its manifest.
fn detect(dir: &Path) -> anyhow::Result<Lang> {
    match (dir.join("go.mod").is_file(), dir.join("Cargo.toml").is_file()) {
        (true, false) => Ok(Lang::Go),
        (false, true) => Ok(Lang::Rust),
        (true, true) => {
            bail!("{} has both a go.mod and a Cargo.toml: choose with --lang go or --lang rust", dir.display())
        }
        (false, false) => bail!(
            "{} has neither a go.mod nor a Cargo.toml: a function is a Go module (`go mod init`) \
             or a Rust crate (`cargo new --lib`)",
            dir.display()
        ),
    }
}

fn build_go(args: &Args, lang: Lang) -> Result<scale_func::ScaleFunc, BuildError> {
    let mut build = GoBuild::new(&args.dir).tag(&args.tag).echo_stderr(true);
    if let Some(name) = &args.name {
        build = build.name(name);
    }
    if lang == Lang::TinyGo {
        eprintln!("building Go function in {} with TinyGo (untested)…", args.dir.display());
        build = build.compiler(GoCompiler::TinyGo).program("tinygo");
    } else {
        let version = scale_build::check_go(Path::new("go"))?;
        eprintln!("building Go function in {} with {version}…", args.dir.display());
    }
    build.build()
}

fn build_rust(args: &Args) -> Result<scale_func::ScaleFunc, BuildError> {
    let target = if args.wasi { RustTarget::Wasip1 } else { RustTarget::Unknown };
    let mut build = RustBuild::new(&args.dir).tag(&args.tag).target(target).echo_stderr(true);
    if let Some(name) = &args.name {
        build = build.name(name);
    }
    if let Some(dir) = &args.target_dir {
        build = build.target_dir(dir);
    }
    eprintln!(
        "building Rust function in {} for {} (cargo build --release; the first build takes a while)…",
        args.dir.display(),
        target.triple()
    );
    build.build()
}

/// Adds what to do about the build errors a user can fix here.
fn explain(err: BuildError, dir: &Path) -> anyhow::Error {
    let hint = match &err {
        BuildError::Pack(scale_func::Error::InvalidName { .. }) => {
            Some("the name comes from the folder (Go) or the package (Rust); choose another with --name")
        }
        BuildError::Io { path, error }
            if error.kind() == std::io::ErrorKind::NotFound && path.extension().is_some_and(|e| e == "wasm") =>
        {
            Some("cargo made no .wasm: is the crate a cdylib? Its Cargo.toml needs `[lib] crate-type = [\"cdylib\"]`")
        }
        BuildError::ToolFailed { output, .. } if output.contains("target may not be installed") => {
            Some("install the target: `rustup target add wasm32-unknown-unknown` (wasm32-wasip1 with --wasi)")
        }
        _ => None,
    };
    let mut err = match err {
        // The toolchain's output was streamed to stderr as it ran (echo_stderr): do not print it twice.
        BuildError::ToolFailed { command, status, .. } => {
            anyhow::anyhow!("`{command}` failed ({status}); its output is above")
        }
        err => anyhow::Error::from(err),
    };
    if let Some(hint) = hint {
        err = err.context(Hint(hint));
    }
    err.context(format!("building {} failed", dir.display()))
}
