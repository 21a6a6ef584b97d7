//! Test fixture `status`: Sets the status to 201.

use scale_guest::{Context, Error};

#[scale_guest::function]
fn scale(ctx: &mut Context) -> Result<(), Error> {
    ctx.response().set_status_code(201)?;
    Ok(())
}
