use scale_guest::{Context, Error};

#[scale_guest::function]
fn scale(_ctx: &Context) -> Result<(), Error> {
    Ok(())
}

fn main() {}
