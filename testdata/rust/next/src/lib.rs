//! Test fixture `next`: Hands the context on to the rest of the chain.

use scale_guest::{Context, Error};

#[scale_guest::function]
fn scale(ctx: &mut Context) -> Result<(), Error> {
    ctx.next()
}
