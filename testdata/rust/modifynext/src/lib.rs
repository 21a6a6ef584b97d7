//! Test fixture `modifynext`: Sets the response body to "modified", then hands on.

use scale_guest::{Context, Error};

#[scale_guest::function]
fn scale(ctx: &mut Context) -> Result<(), Error> {
    ctx.response().set_body_string("modified");
    ctx.next()
}
