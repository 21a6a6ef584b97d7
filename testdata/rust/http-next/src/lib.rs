//! Test fixture `http-next`: Appends "-modified" to the response body, then hands on.

use scale_guest::{Context, Error};

#[scale_guest::function]
fn scale(ctx: &mut Context) -> Result<(), Error> {
    let mut body = ctx.response().body().to_vec();
    body.extend_from_slice(b"-modified");
    ctx.response().set_body(body);
    ctx.next()
}
