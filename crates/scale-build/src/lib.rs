//! Build Scale Functions from source into `.scale` files.
//!
//! - [`GoBuild`]: a Go module whose `package scale` defines
//!   `func Scale(ctx *signature.Context) (*signature.Context, error)`. The
//!   build writes a generated `main` package and the signature's Go package
//!   (the copy that ships with this crate, so the wire format always matches)
//!   into a temporary directory and runs `go build` for `wasip1` (or TinyGo
//!   for `wasi`, where `tinygo` is installed: untested).
//! - [`RustBuild`]: a `cdylib` crate using `scale-guest`, built with `cargo`
//!   for `wasm32-unknown-unknown` (or `wasm32-wasip1`).
//! - [`pack`]: wraps a `.wasm` module into a [`ScaleFunc`].
//!
//! ```no_run
//! let func = scale_build::GoBuild::new("path/to/function").name("hello").build()?;
//! std::fs::write("hello.scale", func.encode())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use scale_func::{Language, ScaleFunc, SignatureId};

/// The oldest standard Go that can build guests (`//go:wasmexport`).
pub const MIN_GO: (u32, u32) = (1, 24);

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A toolchain program is not installed.
    #[error("`{program}` was not found on PATH: {hint}")]
    ToolMissing {
        /// The program.
        program: String,
        /// How to get it.
        hint: String,
    },
    /// Standard Go is older than [`MIN_GO`].
    #[error("Go {found} is too old: Scale functions need Go {}.{} or newer (for //go:wasmexport)", MIN_GO.0, MIN_GO.1)]
    GoTooOld {
        /// The version found, as `go env GOVERSION` printed it.
        found: String,
    },
    /// The function's directory is not what a build expects.
    #[error("{path}: {problem}")]
    BadSource {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The toolchain ran and failed; its output says why.
    #[error("`{command}` failed ({status}):\n{output}")]
    ToolFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed on standard error (and output).
        output: String,
    },
    /// Reading or writing files failed. (The I/O error is part of the
    /// message, so it is not repeated as the error's `source`.)
    #[error("{path}: {error}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// The built module could not be packed (for example a name with characters a `.scale` file refuses).
    #[error("packing the module: {0}")]
    Pack(#[from] scale_func::Error),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |error| BuildError::Io { path: path.to_path_buf(), error }
}

/// The HTTP signature as recorded in `.scale` files.
pub fn http_signature() -> SignatureId {
    SignatureId::new(scale_signature_http::SIGNATURE_NAME, scale_signature_http::SIGNATURE_VERSION)
        .expect("the HTTP signature's name and version are valid")
}

/// Packs a compiled module into a `.scale` function for the HTTP signature.
///
/// # Errors
///
/// [`BuildError::Pack`] for an invalid name or tag, or bytes that are not a wasm module.
pub fn pack(wasm: Vec<u8>, name: &str, tag: &str, language: Language) -> Result<ScaleFunc, BuildError> {
    Ok(ScaleFunc::new(name, tag, http_signature(), language, wasm)?)
}

/// Runs a command, returning its standard output, or its output as the error.
/// With `echo`, the command's standard error is also copied to ours as it comes.
fn run(mut command: Command, echo: bool) -> Result<String, BuildError> {
    let program = command.get_program().to_string_lossy().into_owned();
    let line = format!("{program} {}", command.get_args().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "));
    let spawn_error = |err: std::io::Error| match err.kind() {
        std::io::ErrorKind::NotFound => {
            BuildError::ToolMissing { program: program.clone(), hint: install_hint(&program) }
        }
        _ => BuildError::Io { path: PathBuf::from(&program), error: err },
    };
    command.stdin(Stdio::null());
    let (status, stdout, stderr) = if echo {
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(spawn_error)?;
        let stderr = child.stderr.take().map(|stderr| std::thread::spawn(move || echo_lines(stderr)));
        let output = child.wait_with_output().map_err(io_error(Path::new(&program)))?;
        let stderr = stderr.and_then(|thread| thread.join().ok()).unwrap_or_default();
        (output.status, output.stdout, stderr)
    } else {
        let output = command.output().map_err(spawn_error)?;
        (output.status, output.stdout, output.stderr)
    };
    if !status.success() {
        let mut text = String::from_utf8_lossy(&stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&stdout));
        return Err(BuildError::ToolFailed { command: line, status: status.to_string(), output: text });
    }
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}

/// Copies `from` to our standard error line by line, and returns all of it.
fn echo_lines(from: impl Read) -> Vec<u8> {
    let mut reader = BufReader::new(from);
    let mut all = Vec::new();
    loop {
        let start = all.len();
        match reader.read_until(b'\n', &mut all) {
            Ok(0) | Err(_) => return all,
            Ok(_) => {
                let _ = std::io::stderr().write_all(&all[start..]);
            }
        }
    }
}

fn install_hint(program: &str) -> String {
    match program {
        "go" => format!("install Go {}.{} or newer (https://go.dev/dl/ or your package manager)", MIN_GO.0, MIN_GO.1),
        "tinygo" => "install TinyGo 0.33 or newer, or build with standard Go".into(),
        "cargo" => "install Rust with rustup".into(),
        other => format!("install {other}"),
    }
}

/// The installed standard Go's version, checked against [`MIN_GO`].
///
/// # Errors
///
/// [`BuildError::ToolMissing`] without `go`, [`BuildError::GoTooOld`] below [`MIN_GO`].
pub fn check_go(go: &Path) -> Result<String, BuildError> {
    let mut command = Command::new(go);
    command.args(["env", "GOVERSION"]);
    let version = run(command, false)?.trim().to_string();
    match parse_go_version(&version) {
        Some(found) if found >= MIN_GO => Ok(version),
        _ => Err(BuildError::GoTooOld { found: version }),
    }
}

/// `go1.26.8` → `(1, 26)`; also accepts `go1.24rc1` and `devel` builds' leading version.
fn parse_go_version(text: &str) -> Option<(u32, u32)> {
    let rest = text.strip_prefix("go")?;
    let mut parts = rest.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Which Go compiler builds the function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoCompiler {
    /// Standard Go (`GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared`).
    Go,
    /// TinyGo (`tinygo build -target=wasip1 -buildmode=c-shared`). Untested:
    /// TinyGo is not installed where this project is developed.
    TinyGo,
}

/// Builds a Go function into a `.scale` file.
#[derive(Debug, Clone)]
pub struct GoBuild {
    dir: PathBuf,
    name: Option<String>,
    tag: String,
    compiler: GoCompiler,
    program: Option<PathBuf>,
    signature: Option<SignatureId>,
    work_dir: Option<PathBuf>,
    echo: bool,
}

impl GoBuild {
    /// A build of the Go module in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            name: None,
            tag: "latest".into(),
            compiler: GoCompiler::Go,
            program: None,
            signature: None,
            work_dir: None,
            echo: false,
        }
    }

    /// The function's name in the `.scale` file (default: the directory's name).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The function's tag (default `latest`).
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = tag.into();
        self
    }

    /// Which compiler to use (default standard Go).
    pub fn compiler(mut self, compiler: GoCompiler) -> Self {
        self.compiler = compiler;
        self
    }

    /// The `go` (or `tinygo`) program to run (default: `go` or `tinygo`,
    /// after the compiler, found on `PATH`).
    pub fn program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = Some(program.into());
        self
    }

    fn program_path(&self) -> PathBuf {
        self.program.clone().unwrap_or_else(|| match self.compiler {
            GoCompiler::Go => PathBuf::from("go"),
            GoCompiler::TinyGo => PathBuf::from("tinygo"),
        })
    }

    /// Records another signature than HTTP's in the `.scale` file. The code is
    /// still built against the HTTP package; this exists to make functions a
    /// runtime must refuse, for tests.
    pub fn record_signature(mut self, signature: SignatureId) -> Self {
        self.signature = Some(signature);
        self
    }

    /// Where to write the generated build module (default: a fresh
    /// temporary directory, removed afterwards). A fixed directory lets
    /// repeated builds reuse Go's caches.
    pub fn work_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.work_dir = Some(dir.into());
        self
    }

    /// Copies the compiler's standard error to this process's as the build
    /// runs, to show progress (default: off; it is kept for
    /// [`BuildError::ToolFailed`] either way).
    pub fn echo_stderr(mut self, echo: bool) -> Self {
        self.echo = echo;
        self
    }

    /// Runs the build.
    ///
    /// # Errors
    ///
    /// A missing or old toolchain, a directory without a `go.mod`, the Go
    /// compiler's own errors (as [`BuildError::ToolFailed`], with its output),
    /// file errors.
    pub fn build(&self) -> Result<ScaleFunc, BuildError> {
        let wasm = self.build_wasm()?;
        let name = match &self.name {
            Some(name) => name.clone(),
            None => dir_name(&self.dir)?,
        };
        let language = match self.compiler {
            GoCompiler::Go => Language::Go,
            GoCompiler::TinyGo => Language::TinyGo,
        };
        let signature = self.signature.clone().unwrap_or_else(http_signature);
        Ok(ScaleFunc::new(name, &self.tag, signature, language, wasm)?)
    }

    /// Runs the build and returns the `.wasm` module.
    ///
    /// # Errors
    ///
    /// As [`GoBuild::build`].
    pub fn build_wasm(&self) -> Result<Vec<u8>, BuildError> {
        let program = self.program_path();
        if self.compiler == GoCompiler::Go {
            check_go(&program)?;
        }
        let dir = std::path::absolute(&self.dir).map_err(io_error(&self.dir))?;
        let function_module = read_module_path(&dir)?;
        // By default the generated module lives in a folder named after the
        // function's folder, so that rebuilds reuse Go's caches and record the
        // same paths (and so give the same bytes).
        let work = match &self.work_dir {
            Some(work) => work.clone(),
            None => std::env::temp_dir().join(format!("scale-go-build-{:016x}", fnv1a(go_path(&dir).as_bytes()))),
        };
        let signature_dir = work.join("signature");
        let main_dir = work.join("main");
        for dir in [&signature_dir, &main_dir] {
            std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        }
        for (file, text) in scale_signature_http::go_sources::FILES {
            write_if_changed(&signature_dir.join(file), text)?;
        }
        let signature_module = scale_signature_http::go_sources::MODULE_PATH;
        let main_go = GO_MAIN_TEMPLATE
            .replace("{{SIGNATURE_IMPORT}}", signature_module)
            .replace("{{FUNCTION_IMPORT}}", &function_module);
        write_if_changed(&main_dir.join("main.go"), &main_go)?;
        let go_mod = format!(
            "module scale-build\n\ngo 1.24\n\nrequire (\n\t{signature_module} v0.0.0\n\t{function_module} v0.0.0\n)\n\nreplace {signature_module} => {}\n\nreplace {function_module} => {}\n",
            go_path(&signature_dir),
            go_path(&dir),
        );
        write_if_changed(&main_dir.join("go.mod"), &go_mod)?;
        let out = work.join("function.wasm");
        let mut command = Command::new(&program);
        command.current_dir(&main_dir).env("GOWORK", "off").env("GOFLAGS", "-mod=mod");
        match self.compiler {
            GoCompiler::Go => {
                command.env("GOOS", "wasip1").env("GOARCH", "wasm");
                command.args(["build", "-buildmode=c-shared", "-trimpath", "-o"]).arg(&out).arg(".");
            }
            GoCompiler::TinyGo => {
                command.args(["build", "-target=wasip1", "-buildmode=c-shared", "-no-debug", "-o"]).arg(&out).arg(".");
            }
        }
        run(command, self.echo)?;
        std::fs::read(&out).map_err(io_error(&out))
    }
}

/// FNV-1a, for naming work folders (stable across runs and Rust versions).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The generated `main` package that registers the user's `Scale`.
const GO_MAIN_TEMPLATE: &str = include_str!("../templates/go-main.go.tmpl");

/// Go wants forward slashes in `replace` paths on every platform.
fn go_path(path: &Path) -> String {
    path.to_string_lossy().replace('\\', "/")
}

/// The `module` line of `dir/go.mod`.
fn read_module_path(dir: &Path) -> Result<String, BuildError> {
    let go_mod = dir.join("go.mod");
    let text = std::fs::read_to_string(&go_mod).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => BuildError::BadSource {
            path: dir.to_path_buf(),
            problem: "no go.mod here: a Go function is a module (`go mod init example.com/hello`) with `package scale`"
                .into(),
        },
        _ => BuildError::Io { path: go_mod.clone(), error: source },
    })?;
    text.lines()
        .find_map(|line| line.trim().strip_prefix("module "))
        .map(|module| module.trim().trim_matches('"').to_string())
        .ok_or_else(|| BuildError::BadSource { path: go_mod, problem: "no `module` line".into() })
}

fn dir_name(dir: &Path) -> Result<String, BuildError> {
    let dir = std::path::absolute(dir).map_err(io_error(dir))?;
    dir.file_name().map(|name| name.to_string_lossy().into_owned()).ok_or_else(|| BuildError::BadSource {
        path: dir.clone(),
        problem: "cannot name a function after this directory; pass a name".into(),
    })
}

/// Writes `text` to `path` unless it already holds exactly that (keeping
/// modification times, and so build caches, stable).
fn write_if_changed(path: &Path, text: &str) -> Result<(), BuildError> {
    if std::fs::read(path).is_ok_and(|old| old == text.as_bytes()) {
        return Ok(());
    }
    std::fs::write(path, text).map_err(io_error(path))
}

/// The wasm target a Rust function is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RustTarget {
    /// `wasm32-unknown-unknown`: no WASI imports at all (the default).
    Unknown,
    /// `wasm32-wasip1`: for functions that use `std::fs` and friends (which
    /// the host denies) or crates that need WASI.
    Wasip1,
}

impl RustTarget {
    /// The target triple.
    pub fn triple(self) -> &'static str {
        match self {
            RustTarget::Unknown => "wasm32-unknown-unknown",
            RustTarget::Wasip1 => "wasm32-wasip1",
        }
    }
}

/// Builds a Rust function crate into a `.scale` file.
#[derive(Debug, Clone)]
pub struct RustBuild {
    dir: PathBuf,
    name: Option<String>,
    tag: String,
    target: RustTarget,
    target_dir: Option<PathBuf>,
    cargo: OsString,
    echo: bool,
}

impl RustBuild {
    /// A build of the crate in `dir` (a `cdylib` depending on `scale-guest`).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            name: None,
            tag: "latest".into(),
            target: RustTarget::Unknown,
            target_dir: None,
            cargo: std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()),
            echo: false,
        }
    }

    /// The function's name (default: the crate's package name).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The function's tag (default `latest`).
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = tag.into();
        self
    }

    /// The wasm target (default `wasm32-unknown-unknown`).
    pub fn target(mut self, target: RustTarget) -> Self {
        self.target = target;
        self
    }

    /// Cargo's target directory (default: the crate's own `target/`).
    pub fn target_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.target_dir = Some(dir.into());
        self
    }

    /// Copies the cargo's standard error to this process's as the build
    /// runs, to show progress (default: off; it is kept for
    /// [`BuildError::ToolFailed`] either way).
    pub fn echo_stderr(mut self, echo: bool) -> Self {
        self.echo = echo;
        self
    }

    /// Runs `cargo build --release` for the target and packs the module.
    ///
    /// # Errors
    ///
    /// A crate without a `[package] name`, cargo's own errors (with its
    /// output; a missing target says to `rustup target add` it), file errors.
    pub fn build(&self) -> Result<ScaleFunc, BuildError> {
        let manifest = self.dir.join("Cargo.toml");
        let package = read_package_name(&manifest)?;
        let mut command = Command::new(&self.cargo);
        command.args(["build", "--release", "--target", self.target.triple(), "--manifest-path"]).arg(&manifest);
        let target_dir = self.target_dir.clone().unwrap_or_else(|| self.dir.join("target"));
        command.arg("--target-dir").arg(&target_dir);
        run(command, self.echo)?;
        let wasm_path =
            target_dir.join(self.target.triple()).join("release").join(format!("{}.wasm", package.replace('-', "_")));
        let wasm = std::fs::read(&wasm_path).map_err(io_error(&wasm_path))?;
        let name = self.name.clone().unwrap_or(package);
        pack(wasm, &name, &self.tag, Language::Rust)
    }
}

/// The `name` under `[package]` in a `Cargo.toml`.
fn read_package_name(manifest: &Path) -> Result<String, BuildError> {
    let text = std::fs::read_to_string(manifest).map_err(io_error(manifest))?;
    let mut in_package = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package
            && let Some(value) = line.strip_prefix("name").map(str::trim_start).and_then(|rest| rest.strip_prefix('='))
        {
            return Ok(value.trim().trim_matches('"').to_string());
        }
    }
    Err(BuildError::BadSource { path: manifest.to_path_buf(), problem: "no `name` under `[package]`".into() })
}

/// A directory removed when dropped.
#[cfg(test)]
struct TempDir(PathBuf);

#[cfg(test)]
impl TempDir {
    fn new(prefix: &str) -> Result<Self, BuildError> {
        let unique = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let path = std::env::temp_dir().join(format!("{prefix}-{}-{unique}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(io_error(&path))?;
        Ok(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

#[cfg(test)]
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_versions_parse() {
        assert_eq!(parse_go_version("go1.26.8"), Some((1, 26)));
        assert_eq!(parse_go_version("go1.24rc1"), Some((1, 24)));
        assert_eq!(parse_go_version("go1.9"), Some((1, 9)));
        assert_eq!(parse_go_version("devel"), None);
        assert!(parse_go_version("go1.23.4").unwrap() < MIN_GO);
    }

    #[test]
    fn package_names_are_read_from_the_package_table() {
        let dir = TempDir::new("scale-build-test").unwrap();
        let manifest = dir.path().join("Cargo.toml");
        std::fs::write(&manifest, "[workspace]\nname = \"no\"\n\n[package]\nname = \"my-fn\"\nversion = \"0.1.0\"\n")
            .unwrap();
        assert_eq!(read_package_name(&manifest).unwrap(), "my-fn");
        std::fs::write(&manifest, "[dependencies]\nname = \"x\"\n").unwrap();
        assert!(matches!(read_package_name(&manifest), Err(BuildError::BadSource { .. })));
    }

    #[test]
    fn a_directory_without_go_mod_is_explained() {
        let dir = TempDir::new("scale-build-test").unwrap();
        let err = read_module_path(dir.path()).unwrap_err();
        assert!(matches!(err, BuildError::BadSource { ref problem, .. } if problem.contains("go.mod")), "{err}");
    }

    #[test]
    fn a_missing_program_is_named() {
        let err = check_go(Path::new("/nonexistent/go")).unwrap_err();
        assert!(matches!(err, BuildError::ToolMissing { .. }), "{err}");
    }
}
