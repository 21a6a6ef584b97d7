//! The host side of the guest ABI (the project's `docs/abi.md`): the
//! exports a module must have, and the one table of imports the host
//! provides, which both load-time checks and instantiation read.
//!
//! A function's imports are resolved once, when it is loaded
//! ([`ImportPlan::resolve`]): each import the module declares is looked up
//! in the table and its type checked against what the host makes for it.
//! Each instantiation then makes the host functions in the module's import
//! order, without looking anything up again.

pub(crate) mod env;
pub(crate) mod memory;

use wasmer::{Engine, ExternType, Function, FunctionEnv, FunctionType, Imports, Module, Store, Type};

use crate::abi::env::{GuestEnv, host_next, host_next_result, host_panic};
use crate::signature::Signature;
use crate::wasi::{self, WasiEnv};

/// The ABI versions this host speaks.
pub(crate) mod versions {
    /// The version of the guest ABI this runtime speaks, the newest (see
    /// `docs/abi.md`); it also serves guests of versions down to 1.
    pub const VERSION: u32 = 2;
    /// The oldest version still served.
    pub const OLDEST: u32 = 1;
    /// The first version whose `next` may answer 0: "unchanged".
    pub const UNCHANGED_ANSWER: u32 = 2;
}

/// The module name of the host's own imports.
const ENV: &str = "env";

/// How the host makes one of its functions for an instance.
enum Make<S: Signature> {
    /// A function of the `env` module, on the guest's state.
    Env(fn(&mut Store, &FunctionEnv<GuestEnv<S>>) -> Function),
    /// A function of the WASI shim, on the shim's state.
    Wasi(wasi::Make),
}

impl<S: Signature> Clone for Make<S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S: Signature> Copy for Make<S> {}

/// The functions of the `env` module.
fn env_functions<S: Signature>() -> [(&'static str, Make<S>); 3] {
    [
        ("next", Make::Env(|store, env| Function::new_typed_with_env(store, env, host_next::<S>))),
        ("next_result", Make::Env(|store, env| Function::new_typed_with_env(store, env, host_next_result::<S>))),
        ("panic", Make::Env(|store, env| Function::new_typed_with_env(store, env, host_panic::<S>))),
    ]
}

/// What the host provides for `module.name`, if anything.
fn lookup<S: Signature>(module: &str, name: &str) -> Option<(&'static str, &'static str, Make<S>)> {
    match module {
        ENV => env_functions::<S>().into_iter().find(|(n, _)| *n == name).map(|(n, make)| (ENV, n, make)),
        wasi::MODULE => {
            wasi::FUNCTIONS.iter().find(|(n, _)| *n == name).map(|(n, make)| (wasi::MODULE, *n, Make::Wasi(*make)))
        }
        _ => None,
    }
}

/// One function's imports, resolved against the host's table.
pub(crate) struct ImportPlan<S: Signature> {
    /// What to make for each import, in the module's import order.
    imports: Vec<(&'static str, &'static str, Make<S>)>,
    /// Whether any import belongs to the WASI shim.
    uses_wasi: bool,
}

impl<S: Signature> ImportPlan<S> {
    /// Resolves every import of `module`: each must be a host function of
    /// the type the host makes for it. Names the first offending import.
    pub fn resolve(module: &Module, engine: &Engine) -> Result<Self, String> {
        // The host functions are made once here, in a store of their own,
        // to read their types.
        let mut store = Store::new(engine.clone());
        let guest_env = FunctionEnv::new(&mut store, GuestEnv::<S>::new());
        let wasi_env = FunctionEnv::new(&mut store, WasiEnv::default());
        let mut imports = Vec::new();
        for import in module.imports() {
            let (module_name, field) = (import.module(), import.name());
            let Some((module_name, field, make)) = lookup::<S>(module_name, field) else {
                return Err(format!(
                    "it imports `{module_name}.{field}`, which the host does not provide (guests are sandboxed: see docs/abi.md)"
                ));
            };
            let expected = make.make(&mut store, &guest_env, &wasi_env).ty(&store);
            match import.ty() {
                ExternType::Function(ty) if *ty == expected => {}
                other => {
                    return Err(format!("import `{module_name}.{field}` has type {other:?}, expected {expected}"));
                }
            }
            imports.push((module_name, field, make));
        }
        let uses_wasi = imports.iter().any(|(_, _, make)| matches!(make, Make::Wasi(_)));
        Ok(Self { imports, uses_wasi })
    }

    /// Whether the module imports from the WASI shim, and so needs its state.
    pub fn uses_wasi(&self) -> bool {
        self.uses_wasi
    }

    /// The host functions of one instance, in `store`, on its states.
    /// `wasi_env` is needed when [`uses_wasi`](Self::uses_wasi).
    pub fn instantiate(
        &self,
        store: &mut Store,
        guest_env: &FunctionEnv<GuestEnv<S>>,
        wasi_env: Option<&FunctionEnv<WasiEnv>>,
    ) -> Imports {
        let mut imports = Imports::new();
        for &(module, name, make) in &self.imports {
            let function = match (make, wasi_env) {
                (Make::Env(make), _) => make(store, guest_env),
                (Make::Wasi(make), Some(wasi_env)) => make(store, wasi_env),
                // `resolve` found no WASI import: there is nothing to make.
                (Make::Wasi(_), None) => continue,
            };
            imports.define(module, name, function);
        }
        imports
    }
}

impl<S: Signature> Make<S> {
    fn make(
        self,
        store: &mut Store,
        guest_env: &FunctionEnv<GuestEnv<S>>,
        wasi_env: &FunctionEnv<WasiEnv>,
    ) -> Function {
        match self {
            Make::Env(make) => make(store, guest_env),
            Make::Wasi(make) => make(store, wasi_env),
        }
    }
}

/// Checks the exports the ABI asks of a module: a memory that is not
/// shared, `scale_abi_version`, `resize` and `run` of their types, and
/// `_initialize` of its type if there is one. Names the first offending
/// export.
pub(crate) fn check_exports(module: &Module) -> Result<(), String> {
    let func = |params: &[Type], results: &[Type]| FunctionType::new(params.to_vec(), results.to_vec());
    match module.exports().find(|export| export.name() == "memory").map(|export| export.ty().clone()) {
        Some(ExternType::Memory(ty)) if !ty.shared => {}
        Some(ExternType::Memory(_)) => return Err("export `memory` is a shared memory".into()),
        Some(other) => return Err(format!("export `memory` is not a memory but {other:?}")),
        None => return Err("missing export `memory`".into()),
    }
    let required = [
        ("scale_abi_version", func(&[], &[Type::I32])),
        ("resize", func(&[Type::I32], &[Type::I32])),
        ("run", func(&[Type::I32], &[Type::I64])),
    ];
    for (export, expected) in required {
        let found = module.exports().find(|e| e.name() == export);
        match found.as_ref().map(|e| e.ty()) {
            Some(ExternType::Function(ty)) if *ty == expected => {}
            Some(ExternType::Function(ty)) => {
                return Err(format!("export `{export}` has type {ty}, expected {expected}"));
            }
            Some(_) => return Err(format!("export `{export}` is not a function")),
            None => return Err(format!("missing export `{export}` (is this a Scale function?)")),
        }
    }
    if let Some(init) = module.exports().find(|e| e.name() == "_initialize") {
        let expected = func(&[], &[]);
        if !matches!(init.ty(), ExternType::Function(ty) if *ty == expected) {
            return Err("export `_initialize` must be a function () -> ()".into());
        }
    }
    Ok(())
}
