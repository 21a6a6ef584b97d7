//! Test fixture `error`: Fails with "guest error".

use scale_guest::{Context, Error};

#[scale_guest::function]
fn scale(_ctx: &mut Context) -> Result<(), Error> {
    Err(Error::from("guest error"))
}
