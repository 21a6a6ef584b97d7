use scale_guest::Context;

#[scale_guest::function]
fn scale(_ctx: &mut Context) {}

fn main() {}
