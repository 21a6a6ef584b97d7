//! Test fixture `modify`: Sets the response body to "modified".

use scale_guest::{Context, Error};

#[scale_guest::function]
fn scale(ctx: &mut Context) -> Result<(), Error> {
    ctx.response().set_body_string("modified");
    Ok(())
}
