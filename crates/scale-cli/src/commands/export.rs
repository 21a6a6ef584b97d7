//! `scale fn export <file.wasm> --name N`

use std::path::PathBuf;

use anyhow::Context;
use scale_func::Language;

use crate::commands::{Lang, output_path, read_wasm, write_scale};
use crate::wasm_info;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The compiled module (.wasm) to pack.
    wasm: PathBuf,
    /// The function's name: 1 to 255 of A-Z a-z 0-9 . -
    #[arg(long, short = 'n')]
    name: String,
    /// The function's tag.
    #[arg(long, short = 't', default_value = "latest")]
    tag: String,
    /// The language it was written in [default: go for modules built by standard Go, else rust].
    #[arg(long, short = 'l', value_enum)]
    lang: Option<Lang>,
    /// Where to write the .scale file [default: <name>.scale].
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
}

/// Packs a `.wasm` module for the HTTP signature, after checking that it is
/// a valid module.
pub fn run(args: Args) -> anyhow::Result<()> {
    let wasm = read_wasm(&args.wasm)?;
    let info = wasm_info::read(&wasm)
        .map_err(anyhow::Error::from)
        .and_then(|info| wasm_info::validate(&wasm).map(|()| info).map_err(anyhow::Error::from))
        .with_context(|| format!("{} is not a valid WebAssembly module", args.wasm.display()))?;
    let language = match args.lang {
        Some(lang) => Language::from(lang),
        // Standard Go stamps every module with a `go:buildid` section.
        None if info.custom_sections.iter().any(|name| name == "go:buildid") => Language::Go,
        None => Language::Rust,
    };
    let func = scale_build::pack(wasm, &args.name, &args.tag, language)?;
    write_scale(&func, &output_path(args.output, &func))
}
