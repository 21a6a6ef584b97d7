//! `scale fn inspect <file.scale>`

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use crate::commands::read_scale;
use crate::display::Size;
use crate::wasm_info;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The .scale file.
    file: PathBuf,
}

/// Prints the metadata, then the module's exports and imports. Fails (after
/// printing what it can) when the module does not parse or validate.
pub fn run(args: Args) -> anyhow::Result<()> {
    let func = read_scale(&args.file)?;
    let wasm = func.function();
    let mut out = String::new();
    let mut field = |label: &str, value: &dyn std::fmt::Display| out.push_str(&format!("{label:<11}{value}\n"));
    field("name:", &func.name());
    field("tag:", &func.tag());
    field("signature:", &func.signature());
    field("language:", &func.language());
    field("format:", &format_args!("version {}", func.version()));
    field("wasm size:", &format_args!("{} ({} bytes)", Size(wasm.len() as u64), wasm.len()));
    field("checksum:", &format_args!("sha256 {}", func.checksum_hex()));
    let info = wasm_info::read(wasm);
    let valid = info.as_ref().map_err(Clone::clone).and_then(|_| wasm_info::validate(wasm));
    match &valid {
        Ok(()) => field("valid:", &"yes"),
        Err(err) => field("valid:", &format_args!("no: {err}")),
    }
    if let Ok(info) = &info {
        if !info.custom_sections.is_empty() {
            out.push_str(&format!(
                "{:<11}{}\n",
                "custom:",
                info.custom_sections.iter().map(|name| name.escape_debug().to_string()).collect::<Vec<_>>().join(", ")
            ));
        }
        // Names are any UTF-8; escaping keeps control characters off the terminal.
        let exports: Vec<_> =
            info.exports.iter().map(|e| (e.name.escape_debug().to_string(), e.kind.to_string())).collect();
        let imports: Vec<_> = info
            .imports
            .iter()
            .map(|i| (format!("{}.{}", i.module.escape_debug(), i.name.escape_debug()), i.kind.to_string()))
            .collect();
        list(&mut out, "exports", &exports);
        list(&mut out, "imports", &imports);
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes()).and_then(|()| stdout.flush()).context("cannot write to standard output")?;
    valid.with_context(|| format!("the module in {} is not valid WebAssembly", args.file.display()))
}

/// Appends `title (n):` and one aligned line per item.
fn list(out: &mut String, title: &str, items: &[(String, String)]) {
    out.push_str(&format!("\n{title} ({}):\n", items.len()));
    let width = items.iter().map(|(name, _)| name.chars().count()).max().unwrap_or(0);
    for (name, kind) in items {
        out.push_str(&format!("  {name:<width$}  {kind}\n"));
    }
}
