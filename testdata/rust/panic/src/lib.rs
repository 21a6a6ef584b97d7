//! Test fixture `panic`: Panics with "guest panic".

use scale_guest::{Context, Error};

#[scale_guest::function]
fn scale(_ctx: &mut Context) -> Result<(), Error> {
    panic!("guest panic");
}
