//! Tests of the `scale` binary, run as a user runs it. One module per
//! command. The fixtures come from `cargo xtask fixtures`.

mod build;
mod export;
mod hostile;
mod inspect;
mod new;
mod routes;
mod run;
mod serve;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What one run of `scale` did.
#[derive(Debug)]
pub struct Outcome {
    pub success: bool,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Outcome {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Panics, showing both outputs, unless the command succeeded.
    #[track_caller]
    pub fn expect_success(self) -> Self {
        assert!(self.success, "scale failed:\nstdout: {}\nstderr: {}", self.stdout_str(), self.stderr);
        self
    }

    /// Panics unless the command failed and said `needle` on standard error.
    #[track_caller]
    pub fn expect_failure(self, needle: &str) -> Self {
        assert!(!self.success, "scale succeeded, expected a failure:\nstdout: {}", self.stdout_str());
        assert!(self.stderr.contains(needle), "stderr lacks {needle:?}:\n{}", self.stderr);
        assert!(self.stderr.lines().any(|line| line.starts_with("error: ")), "no `error: ` line:\n{}", self.stderr);
        self
    }
}

/// Runs `scale` with `args` in the current directory.
pub fn scale<I, S>(args: I) -> Outcome
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    spawn(scale_command().args(args), &[])
}

/// Runs `scale` with `args`, feeding `stdin` to it.
pub fn scale_with_stdin<I, S>(args: I, stdin: &[u8]) -> Outcome
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    spawn(scale_command().args(args), stdin)
}

/// Runs `scale` with `args` in the directory `dir`.
pub fn scale_in<I, S>(dir: &Path, args: I) -> Outcome
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    spawn(scale_command().current_dir(dir).args(args), &[])
}

/// The `scale` command, with its default module cache in a folder of the
/// tests' own (the user's cache directory stays untouched).
pub fn scale_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_scale"));
    command.env(scale_runtime::CACHE_DIR_VAR, Path::new(env!("CARGO_TARGET_TMPDIR")).join("scale-cli-module-cache"));
    command
}

fn spawn(command: &mut Command, stdin: &[u8]) -> Outcome {
    let mut child =
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("scale starts");
    // Dropping the handle after the write closes the pipe: the body ends there.
    child.stdin.take().expect("stdin is piped").write_all(stdin).expect("stdin takes the bytes");
    let output = child.wait_with_output().expect("scale runs to the end");
    Outcome {
        success: output.status.success(),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A path as a command-line argument.
pub fn arg(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A built fixture, `target/fixtures/{go,rust}/<name>.scale`.
#[track_caller]
pub fn fixture(language: &str, name: &str) -> PathBuf {
    let path = workspace_root().join("target/fixtures").join(language).join(format!("{name}.scale"));
    assert!(path.is_file(), "{} is missing: run `cargo xtask fixtures`", path.display());
    path
}

/// A fresh, empty directory for one test, under cargo's temporary directory.
pub fn temp_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("scale-cli").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("the temporary directory can be made");
    dir
}
