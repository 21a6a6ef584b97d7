//! `cargo xtask mem`: the runtime's memory figures, from the `memory`
//! example of scale-runtime built in release (see its documentation).

use anyhow::{Context, Result};
use xshell::{Shell, cmd};

pub fn mem(sh: &Shell) -> Result<()> {
    let cargo = crate::cargo();
    cmd!(sh, "{cargo} run --release --quiet -p scale-runtime --example memory")
        .run()
        .context("the memory example failed (are the fixtures built? `cargo xtask fixtures`)")?;
    Ok(())
}
