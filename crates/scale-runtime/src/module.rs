//! Compiling modules, checking them against the ABI, and the on-disk cache.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmer::{Engine, Module};

use crate::engine::{EngineSettings, TablePlan};
use crate::error::Error;

/// The environment variable that overrides [`default_cache_dir`].
pub const CACHE_DIR_VAR: &str = "SCALE_CACHE_DIR";

/// The module cache directory for this user: `$SCALE_CACHE_DIR` when set,
/// else `scale/modules` in the platform's cache directory
/// (`$XDG_CACHE_HOME` or `~/.cache` on Linux, `~/Library/Caches` on macOS,
/// the local app data folder on Windows). `None` when there is no home
/// directory to put it in.
///
/// The `scale` command caches there by default;
/// [`RuntimeBuilder::default_cache`](crate::RuntimeBuilder::default_cache)
/// makes a runtime use it.
pub fn default_cache_dir() -> Option<PathBuf> {
    cache_dir_from(std::env::var_os(CACHE_DIR_VAR), || {
        directories::ProjectDirs::from("", "", "scale").map(|dirs| dirs.cache_dir().to_path_buf())
    })
}

/// [`default_cache_dir`] given the variable's value and the platform's
/// cache directory for `scale`: the variable when set and not empty, else
/// `modules` in the platform's directory.
fn cache_dir_from(variable: Option<std::ffi::OsString>, platform: impl FnOnce() -> Option<PathBuf>) -> Option<PathBuf> {
    match variable.filter(|dir| !dir.is_empty()) {
        Some(dir) => Some(PathBuf::from(dir)),
        None => platform().map(|dir| dir.join("modules")),
    }
}

/// Where compiled modules are kept.
#[derive(Debug, Clone)]
pub(crate) struct CacheSetting {
    pub dir: PathBuf,
    /// Whether a directory that cannot be made fails the load. The default
    /// location is a convenience: there, it costs a warning and a compile.
    pub required: bool,
}

/// Compiles `wasm`, through the cache when one is set. `wasm_sha256` is the
/// SHA-256 of `wasm` (a `ScaleFunc` carries it).
pub(crate) fn load(
    name: &str,
    wasm: &[u8],
    wasm_sha256: &[u8; 32],
    engine: &Engine,
    settings: EngineSettings,
    cache: Option<&CacheSetting>,
) -> Result<Module, Error> {
    let Some(cache) = cache else {
        return compile(name, wasm, engine);
    };
    let dir = &cache.dir;
    let path = cache_path(dir, wasm_sha256, settings);
    if let Some(module) = read_cached(&path, engine) {
        tracing::debug!(function = name, path = %path.display(), "module loaded from cache");
        return Ok(module);
    }
    let module = compile(name, wasm, engine)?;
    if let Err(source) = std::fs::create_dir_all(dir) {
        if cache.required {
            return Err(Error::Cache { path: dir.to_path_buf(), source });
        }
        tracing::warn!(function = name, path = %dir.display(), error = %source, "cannot make the module cache directory; not caching");
        return Ok(module);
    }
    match module.serialize() {
        Ok(bytes) => {
            if let Err(err) = write_cached(&path, &bytes) {
                tracing::warn!(function = name, path = %path.display(), error = %err, "could not write the module cache");
            }
        }
        Err(err) => tracing::warn!(function = name, error = %err, "could not serialize the module for the cache"),
    }
    Ok(module)
}

/// Compiles `wasm`, and says once per process when compiling is as slow as
/// an unoptimised compiler makes it (see [`warn_if_unoptimised`]).
fn compile(name: &str, wasm: &[u8], engine: &Engine) -> Result<Module, Error> {
    let started = Instant::now();
    let module = Module::new(engine, wasm)
        .map_err(|err| Error::InvalidModule { function: name.to_string(), reason: err.to_string() })?;
    warn_if_unoptimised(name, wasm.len(), started.elapsed());
    Ok(module)
}

/// Compiling slower than this, in seconds per MiB of wasm, means Cranelift
/// itself was built without optimisation: an optimised Cranelift compiles
/// many times faster, and the threshold sits between the two with room
/// on both sides for slow or busy machines.
const UNOPTIMISED_SECS_PER_MIB: f64 = 4.0;

/// Compiles shorter than this never warn: small modules compile quickly
/// either way.
const UNOPTIMISED_MIN_SECS: f64 = 3.0;

/// In a debug build of the host, a compile slow enough to come from an
/// unoptimised Cranelift prints, once per process, how to make it fast: a
/// host crate does not inherit this workspace's `[profile.dev.package]`
/// settings. Release builds never print.
fn warn_if_unoptimised(name: &str, wasm_len: usize, took: Duration) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let secs = took.as_secs_f64();
    let mib = wasm_len as f64 / f64::from(1 << 20);
    if !cfg!(debug_assertions) || secs < UNOPTIMISED_MIN_SECS || secs < UNOPTIMISED_SECS_PER_MIB * mib {
        return;
    }
    if WARNED.swap(true, Ordering::Relaxed) {
        return;
    }
    let message = format!(
        "compiling the function {name} ({mib:.1} MiB of wasm) took {secs:.0} s because the WebAssembly compiler in \
         this debug build is not optimised. Optimise it in the dev profile of your Cargo.toml (the lines are in \
         scale-runtime's README, \"Debug builds\"), and keep compiled modules with RuntimeBuilder::default_cache()"
    );
    tracing::warn!(function = name, seconds = secs, "{message}");
    eprintln!("warning (scale-runtime): {message}");
}

/// Cache files start with this, then the XXH3-128 of the rest (16 bytes,
/// little-endian), then wasmer's artifact.
///
/// The check guards against torn or damaged files, not against someone who
/// can write the cache directory (they could write a matching checksum as
/// well), so a fast non-cryptographic hash does: a Go guest's artifact is
/// several MiB, read on every start.
const CACHE_MAGIC: &[u8; 8] = b"SCALEMC2";

/// The integrity check of a cached artifact.
fn artifact_checksum(artifact: &[u8]) -> [u8; 16] {
    twox_hash::XxHash3_128::oneshot(artifact).to_le_bytes()
}

/// The cache file of a module: named by the SHA-256 of the engine settings
/// and of the wasm's own SHA-256.
fn cache_path(dir: &Path, wasm_sha256: &[u8; 32], settings: EngineSettings) -> PathBuf {
    let mut hasher = Sha256::new();
    hasher.update(settings.cache_tag().as_bytes());
    hasher.update([0]);
    hasher.update(wasm_sha256);
    let key: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{key}.module"))
}

/// The cached module at `path`, if there is one that is whole and ours.
fn read_cached(path: &Path, engine: &Engine) -> Option<Module> {
    let bytes = bytes::Bytes::from(std::fs::read(path).ok()?);
    let header = CACHE_MAGIC.len() + 16;
    let (magic, checksum) = bytes.get(..header)?.split_at(CACHE_MAGIC.len());
    // Shares the read buffer: no copy of the artifact on our side.
    let artifact = bytes.slice(header..);
    if magic != CACHE_MAGIC {
        tracing::debug!(path = %path.display(), "module cache entry of another format; recompiling");
        return None;
    }
    if artifact_checksum(&artifact) != checksum {
        tracing::warn!(path = %path.display(), "module cache entry is corrupt; recompiling");
        return None;
    }
    // SAFETY: `deserialize` trusts its input to be an artifact wasmer wrote.
    // The file carries a checksum over the artifact that we wrote beside it,
    // and its name is a hash of the wasm's SHA-256 and of the engine settings, so
    // these bytes are what `Module::serialize` produced for this very module
    // with an engine like this one (wasmer also checks its own header and
    // version). A corrupt or foreign file fails the checksum and is recompiled.
    match unsafe { Module::deserialize(engine, artifact) } {
        Ok(module) => Some(module),
        Err(err) => {
            tracing::warn!(path = %path.display(), error = %err, "module cache entry is unusable; recompiling");
            None
        }
    }
}

fn write_cached(path: &Path, artifact: &[u8]) -> std::io::Result<()> {
    // Write to a temporary name and rename, so readers never see half a file.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(CACHE_MAGIC)?;
    file.write_all(&artifact_checksum(artifact))?;
    file.write_all(artifact)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

/// Checks a compiled module against the limits (one memory; what its
/// memory and tables declare at least must fit) and against the exports the
/// ABI asks for. Names the first offending declaration or export. Imports
/// are checked when they are resolved ([`crate::abi::ImportPlan::resolve`]).
pub(crate) fn validate(name: &str, module: &Module, settings: EngineSettings) -> Result<(), Error> {
    let invalid = |reason: String| Error::InvalidModule { function: name.to_string(), reason };
    let info = module.info();
    if info.memories.len() > 1 {
        return Err(invalid(format!(
            "it has {} memories; a Scale function has exactly one (docs/abi.md)",
            info.memories.len()
        )));
    }
    let plan = TablePlan::new(info, settings.table_limit).map_err(invalid)?;
    if let Some(memory) = info.memories.values().next() {
        let available = settings.memory_limit_pages.saturating_sub(plan.reserved_pages);
        if memory.minimum.0 > available {
            return Err(invalid(format!(
                "its memory declares {} pages at least and its tables may take {} more, past the memory limit of {} pages",
                memory.minimum.0, plan.reserved_pages, settings.memory_limit_pages
            )));
        }
    }
    crate::abi::check_exports(module).map_err(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_dir_is_the_variable_when_set_else_modules_in_the_platform_cache() {
        let platform = || Some(PathBuf::from("/home/u/.cache/scale"));
        assert_eq!(cache_dir_from(Some("/srv/cache".into()), platform), Some(PathBuf::from("/srv/cache")));
        assert_eq!(cache_dir_from(Some("".into()), platform), Some(PathBuf::from("/home/u/.cache/scale/modules")));
        assert_eq!(cache_dir_from(None, platform), Some(PathBuf::from("/home/u/.cache/scale/modules")));
        assert_eq!(cache_dir_from(None, || None), None);
        assert_eq!(cache_dir_from(Some("/srv/cache".into()), || None), Some(PathBuf::from("/srv/cache")));
    }
}
