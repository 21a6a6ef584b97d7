//! Test fixture `afternext`: Hands on, then appends "-after" to the response body and sets response header `x-after` to "yes".

use scale_guest::{Context, Error};

#[scale_guest::function]
fn scale(ctx: &mut Context) -> Result<(), Error> {
    ctx.next()?;
    let mut body = ctx.response().body().to_vec();
    body.extend_from_slice(b"-after");
    ctx.response().set_body(body);
    ctx.response().headers_mut().set("x-after", ["yes"]);
    Ok(())
}
