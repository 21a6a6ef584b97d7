use scale_guest::{Context, Error};

#[scale_guest::function(name = "x")]
fn scale(_ctx: &mut Context) -> Result<(), Error> {
    Ok(())
}

fn main() {}
