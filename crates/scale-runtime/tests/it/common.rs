//! Loading fixtures and building runtimes for tests.

use std::path::PathBuf;

use scale_runtime::{Context, HandlerError, Runtime, RuntimeBuilder, ScaleFunc, Signature};

/// The guest languages every fixture exists in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Go,
    Rust,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::Go, Lang::Rust];

    fn dir(self) -> &'static str {
        match self {
            Lang::Go => "go",
            Lang::Rust => "rust",
        }
    }
}

fn workspace_target() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target")
}

/// The fixture `name` in `lang`, as built by `cargo xtask fixtures`.
pub fn fixture(lang: Lang, name: &str) -> ScaleFunc {
    let dir = std::env::var_os("SCALE_FIXTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_target().join("fixtures"));
    let path = dir.join(lang.dir()).join(format!("{name}.scale"));
    let bytes = std::fs::read(&path).unwrap_or_else(|err| {
        panic!("fixture {} is missing ({err}): run `cargo xtask fixtures` first", path.display())
    });
    ScaleFunc::decode(&bytes).unwrap_or_else(|err| panic!("fixture {} does not decode: {err}", path.display()))
}

/// A builder whose modules go through a shared on-disk cache, so each
/// fixture is compiled once per engine setting for the whole test run.
pub fn builder() -> RuntimeBuilder {
    builder_for()
}

/// [`builder`], for a runtime of signature `S`.
pub fn builder_for<S: Signature>() -> RuntimeBuilder<S> {
    Runtime::with_signature().cache_dir(workspace_target().join("test-module-cache"))
}

/// A runtime with the default settings running `names` of `lang` as a chain.
pub fn runtime(lang: Lang, names: &[&str]) -> Runtime {
    builder()
        .functions(names.iter().map(|name| fixture(lang, name)))
        .build()
        .unwrap_or_else(|err| panic!("{lang:?} {names:?}: {err}"))
}

/// A native handler that panics on its first call and sets the body
/// "after the panic" on every later one.
pub fn panics_the_first_time() -> impl FnMut(&mut Context) -> Result<(), HandlerError> + Send + 'static {
    let mut panicked = false;
    move |ctx| {
        if !std::mem::replace(&mut panicked, true) {
            panic!("the handler panicked");
        }
        ctx.response.set_body("after the panic");
        Ok(())
    }
}
