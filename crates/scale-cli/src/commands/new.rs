//! `scale fn new <name> --language go|rust`

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::Hint;
use crate::commands::check_name_and_tag;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The function's name: 1 to 255 of A-Z a-z 0-9 . - (a Rust function's
    /// is also its package's, so no `.` and no leading digit).
    name: String,
    /// The language of the function.
    #[arg(long, short = 'l', visible_alias = "lang", value_enum)]
    language: Template,
    /// The folder to make [default: ./<name>]. It must not exist, or be empty.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The Scale checkout whose SDK the function uses [default: the one this
    /// `scale` was built from].
    #[arg(long, value_name = "DIR")]
    checkout: Option<PathBuf>,
}

/// The languages `scale fn new` writes functions in, one template each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Template {
    /// Go, built with the standard Go toolchain (1.24 or newer).
    Go,
    /// Rust, built with cargo for wasm32-unknown-unknown.
    Rust,
}

/// One file of a template: where it goes in the new folder, and its text.
struct TemplateFile {
    path: &'static str,
    text: &'static str,
}

const RUST_FILES: &[TemplateFile] = &[
    TemplateFile { path: "Cargo.toml", text: include_str!("../../templates/new/rust/Cargo.toml.tmpl") },
    TemplateFile { path: "src/lib.rs", text: include_str!("../../templates/new/rust/lib.rs.tmpl") },
    TemplateFile { path: "README.md", text: include_str!("../../templates/new/rust/README.md.tmpl") },
    TemplateFile { path: ".gitignore", text: include_str!("../../templates/new/rust/gitignore.tmpl") },
];

const GO_FILES: &[TemplateFile] = &[
    TemplateFile { path: "go.mod", text: include_str!("../../templates/new/go/go.mod.tmpl") },
    TemplateFile { path: "scale.go", text: include_str!("../../templates/new/go/scale.go.tmpl") },
    TemplateFile { path: "scale_test.go", text: include_str!("../../templates/new/go/scale_test.go.tmpl") },
    TemplateFile { path: "README.md", text: include_str!("../../templates/new/go/README.md.tmpl") },
    TemplateFile { path: ".gitignore", text: include_str!("../../templates/new/go/gitignore.tmpl") },
];

/// The checkout this binary was built from: its crate is `crates/scale-cli` in it.
const BUILT_FROM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

pub fn run(args: Args) -> anyhow::Result<()> {
    check_name_and_tag(Some(&args.name), "latest").context("refusing to make the function")?;
    if args.language == Template::Rust {
        check_package_name(&args.name)?;
    }
    let checkout = find_checkout(args.checkout.as_deref(), args.language)?;
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    if std::fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_some()) {
        bail!("{} already exists and is not empty; choose another --dir", dir.display());
    }
    if dir.exists() && !dir.is_dir() {
        bail!("{} is a file; choose another --dir", dir.display());
    }
    let files = match args.language {
        Template::Go => GO_FILES,
        Template::Rust => RUST_FILES,
    };
    let checkout_text = checkout.to_str().context("the checkout's path is not UTF-8")?.replace('\\', "/");
    for file in files {
        let path = dir.join(file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot make {}", parent.display()))?;
        }
        let text = file.text.replace("{{name}}", &args.name).replace("{{checkout}}", &checkout_text);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let (test, build) = match args.language {
        Template::Go => ("go test ./...", format!("scale fn build --name {} .", args.name)),
        Template::Rust => ("cargo test", "scale fn build .".to_string()),
    };
    eprintln!("made the {:?} function {} in {}", args.language, args.name, dir.display());
    eprintln!("next: cd {} && {test} && {build} && scale run {}.scale --body Ada", dir.display(), args.name);
    Ok(())
}

/// Cargo's rules for a package name, on top of a function name's.
fn check_package_name(name: &str) -> anyhow::Result<()> {
    if name.contains('.') {
        bail!("{name:?} cannot name a Rust function: a package name has no `.` (use `-`)");
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        bail!("{name:?} cannot name a Rust function: a package name does not start with a digit");
    }
    Ok(())
}

/// The Scale checkout to take the SDK from, made absolute, checked to hold
/// the SDK of `language`.
fn find_checkout(given: Option<&Path>, language: Template) -> anyhow::Result<PathBuf> {
    let sdk = match language {
        Template::Go => "crates/scale-signature-http/go/go.mod",
        Template::Rust => "crates/scale-guest/Cargo.toml",
    };
    let candidate = given.unwrap_or(Path::new(BUILT_FROM));
    let found = std::fs::canonicalize(candidate).ok().filter(|dir| dir.join(sdk).is_file());
    match (found, given) {
        (Some(dir), _) => Ok(dir),
        (None, Some(given)) => bail!("{} is not a Scale checkout: it has no {sdk}", given.display()),
        (None, None) => Err(anyhow::anyhow!(
            "the Scale checkout this command was built from ({}) is gone, and the function needs its SDK",
            candidate.display()
        )
        .context(Hint("pass --checkout /path/to/scale, a clone of the Scale repository"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_names_follow_cargo() {
        assert!(check_package_name("hello-world").is_ok());
        assert!(check_package_name("v1.2").unwrap_err().to_string().contains("no `.`"));
        assert!(check_package_name("1st").unwrap_err().to_string().contains("digit"));
    }

    #[test]
    fn the_checkout_this_was_built_from_has_both_sdks() {
        for language in [Template::Go, Template::Rust] {
            let dir = find_checkout(None, language).unwrap();
            assert!(dir.is_absolute(), "{}", dir.display());
        }
        let err = find_checkout(Some(Path::new("/")), Template::Go).unwrap_err();
        assert!(err.to_string().contains("not a Scale checkout"), "{err}");
    }

    #[test]
    fn templates_name_no_unknown_placeholder() {
        for file in RUST_FILES.iter().chain(GO_FILES) {
            let text = file.text.replace("{{name}}", "").replace("{{checkout}}", "");
            assert!(!text.contains("{{"), "{}", file.path);
        }
    }
}
