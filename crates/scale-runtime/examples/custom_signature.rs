//! A runtime whose context is not HTTP: a signature of one's own.
//!
//! ```text
//! cargo xtask fixtures
//! cargo run -p scale-runtime --example custom_signature
//! ```
//!
//! # What a signature is
//!
//! A chain of Scale functions passes one value along, the *context*: each
//! function gets it, may change it, hands it to `next` and gets back what
//! the rest of the chain made of it. A *signature* says what the context is
//! and how it crosses into a guest and back as bytes. The runtime is
//! generic over [`scale_runtime::Signature`]; the HTTP context is the
//! default, and any type implementing the trait can take its place.
//!
//! # How to write one
//!
//! 1. A context type: `Default + Send + 'static`. Here [`Tally`], a count and
//!    a note (`custom_signature/tally.rs`).
//! 2. A wire format for it, and one for a run's *outcome*: the context, or
//!    an error message. Here a few fixed-width fields and length-prefixed
//!    strings, behind a tag byte for the outcome. The decoder gets bytes
//!    straight from guest memory, so it must answer every input, however
//!    malformed, with an error and never panic.
//! 3. `impl Signature` (`custom_signature/signature.rs`): a name and a
//!    version, an `Error` type, and four methods: `encode` and `decode` for
//!    the context, `encode_result` and `decode_result` for the outcome. The
//!    trait's other methods are shortcuts with defaults built on these four;
//!    override them only to go faster.
//! 4. A guest that speaks the same bytes. The `tally` fixture
//!    (`testdata/rust/tally`) uses `scale-guest-abi`, the ABI on raw bytes,
//!    and compiles the same `tally.rs`, so both sides share the format.
//! 5. A `.scale` file that records the signature as `name@version`
//!    (`tally@v1` here): the runtime refuses a function recorded for another
//!    signature. `cargo xtask fixtures` records it for the `tally` fixture.
//!
//! # What this runs
//!
//! A chain of the `tally` guest twice, then a native handler. Each guest
//! counts the tally and appends to its note on the way in and again on the
//! way out, so the note shows the order the chain ran in.
//!
//! A path given as the first argument replaces the built fixture.

#[path = "custom_signature/signature.rs"]
mod signature;
#[path = "custom_signature/tally.rs"]
mod tally;

use std::path::PathBuf;
use std::process::ExitCode;

use scale_runtime::{Runtime, ScaleFunc};
use tally::Tally;

/// Where `cargo xtask fixtures` puts the `tally` guest.
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/fixtures/rust/tally.scale");

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("custom_signature: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args_os().nth(1).map_or_else(|| PathBuf::from(FIXTURE), PathBuf::from);
    let bytes = std::fs::read(&path).map_err(|err| {
        format!("cannot read {}: {err}\nbuild the fixtures first: cargo xtask fixtures", path.display())
    })?;
    let function = ScaleFunc::decode(&bytes)?;
    println!("{} is built for signature {}", function.name(), function.signature());

    // A runtime of the tally signature: it checks that every function
    // records `tally@v1`, and runs them as a chain, in order.
    let runtime = Runtime::<Tally>::with_signature().function(function.clone()).function(function).build()?;

    // The native handler runs when the last guest calls `next`.
    let mut instance = runtime.instance()?.with_handler(|tally: &mut Tally| {
        tally.count *= 10;
        tally.note.push_str(" native");
        Ok(())
    });
    instance.set_context(Tally { count: 1, note: "host".into() });
    instance.run()?;

    let tally = instance.context();
    println!("count: {}", tally.count);
    println!("note:  {}", tally.note);
    Ok(())
}
