//! Test fixture `passthrough`: Hands the context back unchanged, without calling `next`.

use scale_guest::{Context, Error};

#[scale_guest::function]
fn scale(_ctx: &mut Context) -> Result<(), Error> {
    Ok(())
}
