use scale_guest::{Context, Error};

#[scale_guest::function]
fn first(_ctx: &mut Context) -> Result<(), Error> {
    Ok(())
}

#[scale_guest::function]
fn second(_ctx: &mut Context) -> Result<(), Error> {
    Ok(())
}

fn main() {}
