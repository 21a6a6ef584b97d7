//! The default function of `scale serve`: greets the caller, then hands on.

use scale_guest::{Context, Error};

#[scale_guest::function]
fn hello(ctx: &mut Context) -> Result<(), Error> {
    let response = ctx.response();
    response.set_body_string("Hello, World!\n");
    response.headers_mut().set("content-type", ["text/plain; charset=utf-8"]);
    ctx.next()
}
