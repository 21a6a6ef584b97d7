use scale_guest::{Context, Error};

#[scale_guest::function]
fn scale(_ctx: &mut Context, _extra: u32) -> Result<(), Error> {
    Ok(())
}

fn main() {}
