use scale_guest::Context;

struct NotDisplay;

#[scale_guest::function]
fn scale(_ctx: &mut Context) -> Result<(), NotDisplay> {
    Ok(())
}

fn main() {}
