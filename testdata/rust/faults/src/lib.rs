//! Test fixture `faults`: one function for the fault-injection soak; the
//! request URI picks what it does, so that good and bad runs share one pool.
//! `/echo` answers with the request body; `/error` fails with "guest error";
//! `/panic` panics with "guest panic"; `/loop` never returns; `/bomb`
//! allocates 1 MiB chunks until the memory limit stops it.

use scale_guest::{Context, Error};

#[scale_guest::function]
fn scale(ctx: &mut Context) -> Result<(), Error> {
    let uri = ctx.request().uri.clone();
    match uri.as_str() {
        "/echo" => {
            let body = ctx.request().body.clone();
            ctx.response().set_body(body);
            Ok(())
        }
        "/error" => Err(Error::from("guest error")),
        "/panic" => panic!("guest panic"),
        "/loop" => {
            let mut counter = 0u64;
            loop {
                counter = std::hint::black_box(counter.wrapping_add(1));
            }
        }
        "/bomb" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
                std::hint::black_box(&hoard);
            }
        }
        other => Err(Error::new(format_args!("unknown fault {other}"))),
    }
}
