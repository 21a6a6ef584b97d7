//! Test fixture `headers`: Copies request header `x-test-header` to response header `x-response`, and sets `x-multi` to two values.

use scale_guest::{Context, Error};

#[scale_guest::function]
fn scale(ctx: &mut Context) -> Result<(), Error> {
    let value = ctx.request().headers().first("x-test-header").unwrap_or("missing").to_owned();
    let headers = ctx.response().headers_mut();
    headers.set("x-response", [value]);
    headers.set("x-multi", ["a", "b"]);
    Ok(())
}
