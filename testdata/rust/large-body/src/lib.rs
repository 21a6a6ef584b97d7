//! Test fixture `large-body`: Echoes the request body as the response body.

use scale_guest::{Context, Error};

#[scale_guest::function]
fn scale(ctx: &mut Context) -> Result<(), Error> {
    let body = ctx.request().body.clone();
    ctx.response().set_body(body);
    Ok(())
}
