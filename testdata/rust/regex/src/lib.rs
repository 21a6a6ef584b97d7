//! Test fixture `regex`: the regex benchmark of upstream Scale. Replaces every
//! four-letter word (`\b\w{4}\b`) of the request body with "wasm", answers
//! with the result as the response body, then calls `next`.

use std::sync::LazyLock;

use regex::bytes::Regex;
use scale_guest::{Context, Error};

/// Compiled on the first run, kept for the instance's lifetime.
static FOUR_LETTER_WORD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b\w{4}\b").expect("the pattern is valid"));

#[scale_guest::function]
fn scale(ctx: &mut Context) -> Result<(), Error> {
    let replaced = FOUR_LETTER_WORD.replace_all(&ctx.request().body, &b"wasm"[..]).into_owned();
    ctx.response().set_body(replaced);
    ctx.next()
}
