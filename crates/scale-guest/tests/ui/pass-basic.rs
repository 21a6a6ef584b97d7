use scale_guest::{Context, Error};

#[scale_guest::function]
fn scale(ctx: &mut Context) -> Result<(), Error> {
    ctx.response().set_body_string("Hello");
    ctx.next()
}

fn main() {
    let mut ctx = Context::default();
    assert!(scale(&mut ctx).is_err());
}
