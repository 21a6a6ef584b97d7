//! Test fixture `loop`: Never returns.

use scale_guest::{Context, Error};

#[scale_guest::function]
fn scale(ctx: &mut Context) -> Result<(), Error> {
    let mut counter = 0u64;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
        if std::hint::black_box(counter) == u64::MAX {
            ctx.response().set_body_string("unreachable in practice");
            return Ok(());
        }
    }
}
