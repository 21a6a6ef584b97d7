//! Test fixture `tally`: a guest of the `tally` signature, not of HTTP, on
//! the raw ABI of `scale-guest-abi`. Its `.scale` file records `tally@v1`
//! (see `cargo xtask fixtures`).
//!
//! It adds 1 to the count and appends " in" to the note, hands the tally to
//! `next`, then adds 1 again and appends " out" (after " (unchanged)" when
//! the host answers that the chain gave the tally back as sent, which it
//! does where the chain ends with no native handlers). Two notes pick another
//! path: "fail" fails with an error outcome before `next`, and "garbage"
//! answers with bytes that are not an outcome.

// The wire format is shared with the host, file for file.
#[path = "../../../../crates/scale-runtime/examples/custom_signature/tally.rs"]
mod tally;

use scale_guest_abi::Answer;
use tally::{Tally, read_outcome, write_outcome};

/// An outcome that claims a note of 4 GiB - 1 bytes and holds none of it.
const GARBAGE: &[u8] = &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];

/// The `run` export's body: an encoded tally in, an encoded outcome out.
/// Named as the export is: the macro keeps the two apart.
fn run(input: &[u8], output: &mut Vec<u8>) {
    let mut ctx = Tally::default();
    if let Err(err) = ctx.read(input) {
        return write_outcome(Err(&format!("tally: the context does not decode: {err}")), output);
    }
    match ctx.note.as_str() {
        "garbage" => output.extend_from_slice(GARBAGE),
        "fail" => write_outcome(Err("tally: the note asks to fail"), output),
        _ => match count(&mut ctx) {
            Ok(()) => write_outcome(Ok(&ctx), output),
            // An error of the rest of the chain is passed on as it came.
            Err(message) => write_outcome(Err(&message), output),
        },
    }
}

/// Counts `ctx` on the way in, runs the rest of the chain on it, and
/// counts it again on the way out.
fn count(ctx: &mut Tally) -> Result<(), String> {
    ctx.count = ctx.count.wrapping_add(1);
    ctx.note.push_str(" in");
    let mut sent = Vec::new();
    ctx.write(&mut sent);
    let answer = scale_guest_abi::next(&sent, |answer| match answer {
        // The chain gave back the very tally sent, which `ctx` still is.
        Answer::Unchanged => {
            ctx.note.push_str(" (unchanged)");
            Ok(Ok(()))
        }
        Answer::Result(bytes) => read_outcome(ctx, bytes),
    });
    match answer {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(message))) => return Err(message),
        Ok(Err(err)) => return Err(format!("tally: the answer to next does not decode: {err}")),
        Err(err) => return Err(format!("tally: {err}")),
    }
    ctx.count = ctx.count.wrapping_add(1);
    ctx.note.push_str(" out");
    Ok(())
}

scale_guest_abi::export_abi!(run);
