//! Test fixture `memory-bomb`: Allocates 1 MiB chunks without bound.

use scale_guest::{Context, Error};

#[scale_guest::function]
fn scale(ctx: &mut Context) -> Result<(), Error> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
        if std::hint::black_box(hoard.len()) == usize::MAX {
            ctx.response().set_body_string("unreachable in practice");
            return Ok(());
        }
    }
}
