//! What a WebAssembly module imports and exports, read with `wasmparser`.
//!
//! Reading never panics on bad input: wasmparser checks every length, and
//! indices from the module are looked up with `get`.

use std::fmt;

use crate::display::Size;

use wasmparser::{
    CompositeInnerType, ExternalKind, FuncType, GlobalType, MemoryType, Parser, Payload, TableType, TypeRef, ValType,
};

/// The imports, exports and custom sections of a module, in module order.
#[derive(Debug, Default)]
pub struct ModuleInfo {
    pub imports: Vec<Import>,
    pub exports: Vec<Export>,
    /// Names of the custom sections (`name`, `producers`, `go:buildid`, ...).
    pub custom_sections: Vec<String>,
}

#[derive(Debug)]
pub struct Import {
    pub module: String,
    pub name: String,
    pub kind: Kind,
}

#[derive(Debug)]
pub struct Export {
    pub name: String,
    pub kind: Kind,
}

/// What an import or export is, with its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A function; `None` when its type index points nowhere.
    Func(Option<Signature>),
    Memory(MemoryType),
    Table(TableType),
    Global(GlobalType),
    Tag,
    /// An index that points past the module's items of that kind.
    Dangling(&'static str, u32),
}

/// A function's parameter and result types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub params: Vec<ValType>,
    pub results: Vec<ValType>,
}

impl From<&FuncType> for Signature {
    fn from(ty: &FuncType) -> Self {
        Self { params: ty.params().to_vec(), results: ty.results().to_vec() }
    }
}

/// `(i32, i32) -> i64`, `() -> ()`, in the notation of docs/abi.md.
impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn list(f: &mut fmt::Formatter<'_>, types: &[ValType], bare_single: bool) -> fmt::Result {
            if bare_single && types.len() == 1 {
                return write!(f, "{}", types[0]);
            }
            f.write_str("(")?;
            for (i, ty) in types.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{ty}")?;
            }
            f.write_str(")")
        }
        list(f, &self.params, false)?;
        f.write_str(" -> ")?;
        list(f, &self.results, true)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Func(Some(signature)) => write!(f, "func {signature}"),
            Kind::Func(None) => f.write_str("func (type index out of range)"),
            Kind::Memory(memory) => {
                // Not `page_size()`: that shifts a u32 by an unchecked exponent.
                let page = 1u64.checked_shl(memory.page_size_log2()).unwrap_or(u64::MAX);
                let bytes = memory.initial.saturating_mul(page);
                write!(f, "memory, {} pages ({})", memory.initial, Size(bytes))?;
                match memory.maximum {
                    Some(max) => write!(f, ", at most {max}")?,
                    None => f.write_str(", no maximum")?,
                }
                if memory.memory64 {
                    f.write_str(", 64-bit")?;
                }
                if memory.shared {
                    f.write_str(", shared")?;
                }
                Ok(())
            }
            Kind::Table(table) => {
                write!(f, "table of {}, {} entries", table.element_type, table.initial)?;
                if let Some(max) = table.maximum {
                    write!(f, ", at most {max}")?;
                }
                Ok(())
            }
            Kind::Global(global) => {
                write!(f, "global {}{}", if global.mutable { "mut " } else { "" }, global.content_type)
            }
            Kind::Tag => f.write_str("tag"),
            Kind::Dangling(what, index) => write!(f, "{what} {index} (index out of range)"),
        }
    }
}

/// The module's items of each kind, imported ones first, as wasm numbers them.
#[derive(Default)]
struct IndexSpaces {
    /// Function types by type index; `None` for non-function types.
    types: Vec<Option<Signature>>,
    /// The type index of every function.
    funcs: Vec<u32>,
    memories: Vec<MemoryType>,
    tables: Vec<TableType>,
    globals: Vec<GlobalType>,
    tags: usize,
}

impl IndexSpaces {
    fn func_kind(&self, type_index: u32) -> Kind {
        Kind::Func(self.types.get(type_index as usize).cloned().flatten())
    }

    fn import_kind(&mut self, ty: TypeRef) -> Kind {
        match ty {
            TypeRef::Func(index) | TypeRef::FuncExact(index) => {
                self.funcs.push(index);
                self.func_kind(index)
            }
            TypeRef::Memory(memory) => {
                self.memories.push(memory);
                Kind::Memory(memory)
            }
            TypeRef::Table(table) => {
                self.tables.push(table);
                Kind::Table(table)
            }
            TypeRef::Global(global) => {
                self.globals.push(global);
                Kind::Global(global)
            }
            TypeRef::Tag(_) => {
                self.tags += 1;
                Kind::Tag
            }
        }
    }

    fn export_kind(&self, kind: ExternalKind, index: u32) -> Kind {
        let at = index as usize;
        let found = match kind {
            ExternalKind::Func | ExternalKind::FuncExact => self.funcs.get(at).map(|&ty| self.func_kind(ty)),
            ExternalKind::Memory => self.memories.get(at).map(|&memory| Kind::Memory(memory)),
            ExternalKind::Table => self.tables.get(at).map(|&table| Kind::Table(table)),
            ExternalKind::Global => self.globals.get(at).map(|&global| Kind::Global(global)),
            ExternalKind::Tag => (at < self.tags).then_some(Kind::Tag),
        };
        found.unwrap_or_else(|| {
            let what = match kind {
                ExternalKind::Func | ExternalKind::FuncExact => "func",
                ExternalKind::Memory => "memory",
                ExternalKind::Table => "table",
                ExternalKind::Global => "global",
                ExternalKind::Tag => "tag",
            };
            Kind::Dangling(what, index)
        })
    }
}

/// Reads the imports and exports of a core module. The whole module is
/// parsed, so a truncated or garbled one is an error, but not validated
/// (see [`validate`]).
pub fn read(wasm: &[u8]) -> Result<ModuleInfo, wasmparser::BinaryReaderError> {
    let mut info = ModuleInfo::default();
    let mut spaces = IndexSpaces::default();
    for payload in Parser::new(0).parse_all(wasm) {
        match payload? {
            Payload::TypeSection(reader) => {
                for group in reader {
                    for sub_type in group?.into_types() {
                        spaces.types.push(match &sub_type.composite_type.inner {
                            CompositeInnerType::Func(ty) => Some(Signature::from(ty)),
                            _ => None,
                        });
                    }
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import?;
                    let kind = spaces.import_kind(import.ty);
                    info.imports.push(Import { module: import.module.into(), name: import.name.into(), kind });
                }
            }
            Payload::FunctionSection(reader) => {
                for type_index in reader {
                    spaces.funcs.push(type_index?);
                }
            }
            Payload::MemorySection(reader) => {
                for memory in reader {
                    spaces.memories.push(memory?);
                }
            }
            Payload::TableSection(reader) => {
                for table in reader {
                    spaces.tables.push(table?.ty);
                }
            }
            Payload::GlobalSection(reader) => {
                for global in reader {
                    spaces.globals.push(global?.ty);
                }
            }
            Payload::TagSection(reader) => {
                for tag in reader {
                    tag?;
                    spaces.tags += 1;
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export?;
                    let kind = spaces.export_kind(export.kind, export.index);
                    info.exports.push(Export { name: export.name.into(), kind });
                }
            }
            Payload::CustomSection(section) => info.custom_sections.push(section.name().into()),
            _ => {}
        }
    }
    Ok(info)
}

/// The exports the runtime needs from every function (docs/abi.md).
pub const REQUIRED_EXPORTS: [&str; 4] = ["memory", "scale_abi_version", "resize", "run"];

impl ModuleInfo {
    /// The names of [`REQUIRED_EXPORTS`] the module does not export.
    pub fn missing_exports(&self) -> Vec<&'static str> {
        REQUIRED_EXPORTS.into_iter().filter(|name| !self.exports.iter().any(|e| e.name == *name)).collect()
    }
}

/// Validates the module with wasmparser's default features (a superset of
/// what the runtime's compiler accepts).
pub fn validate(wasm: &[u8]) -> Result<(), wasmparser::BinaryReaderError> {
    wasmparser::Validator::new().validate_all(wasm).map(drop)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A module, by hand: type 0 `(i32) -> i64`, type 1 `() -> ()`; imports
    /// `env.next` of type 0 and an out-of-range type 9; one function of
    /// type 1; memory 1..2 pages; exports `memory`, `f` (the defined
    /// function, index 2) and `g` (function 7, dangling).
    pub(crate) fn sample() -> Vec<u8> {
        let mut wasm = scale_func::WASM_HEADER.to_vec();
        let section = |wasm: &mut Vec<u8>, id: u8, body: &[u8]| {
            wasm.push(id);
            wasm.push(u8::try_from(body.len()).unwrap());
            wasm.extend_from_slice(body);
        };
        section(&mut wasm, 1, &[2, 0x60, 1, 0x7f, 1, 0x7e, 0x60, 0, 0]);
        section(&mut wasm, 2, &[2, 3, b'e', b'n', b'v', 4, b'n', b'e', b'x', b't', 0, 0, 1, b'm', 1, b'x', 0, 9]);
        section(&mut wasm, 3, &[1, 1]);
        section(&mut wasm, 5, &[1, 1, 1, 2]);
        section(&mut wasm, 7, &[3, 6, b'm', b'e', b'm', b'o', b'r', b'y', 2, 0, 1, b'f', 0, 2, 1, b'g', 0, 7]);
        section(&mut wasm, 10, &[1, 2, 0, 0x0b]);
        wasm
    }

    #[test]
    fn reads_imports_and_exports_with_types() {
        let info = read(&sample()).unwrap();
        let imports: Vec<_> = info.imports.iter().map(|i| format!("{}.{}: {}", i.module, i.name, i.kind)).collect();
        assert_eq!(imports, ["env.next: func (i32) -> i64", "m.x: func (type index out of range)"]);
        let exports: Vec<_> = info.exports.iter().map(|e| format!("{}: {}", e.name, e.kind)).collect();
        assert_eq!(
            exports,
            ["memory: memory, 1 pages (64.0 KiB), at most 2", "f: func () -> ()", "g: func 7 (index out of range)"]
        );
    }

    #[test]
    fn sample_is_invalid_only_for_its_dangling_indices() {
        let err = validate(&sample()).unwrap_err();
        assert!(err.to_string().contains("type index"), "{err}");
    }

    #[test]
    fn truncations_never_panic() {
        let wasm = sample();
        for len in 0..wasm.len() {
            let _ = read(&wasm[..len]);
        }
        assert!(read(&wasm[..wasm.len() - 1]).is_err(), "a cut in the last section goes unnoticed");
    }

    #[test]
    fn garbage_never_panics() {
        let wasm = sample();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            let mut bytes = wasm.clone();
            for _ in 0..4 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = 8 + (seed as usize) % (bytes.len() - 8);
                bytes[at] = (seed >> 32) as u8;
            }
            let _ = read(&bytes);
            let _ = validate(&bytes);
        }
    }
}
