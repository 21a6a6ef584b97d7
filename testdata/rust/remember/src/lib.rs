//! Test fixture `remember`: keeps state from one run to the next, for the
//! isolation tests. Each run counts itself in a global and answers
//! `"<count>:<held>:<previous body>"`, where `held` is the size of the
//! buffer kept by `/grow` runs, then keeps the request body on the heap for
//! the next run. The request URI adds a fault after that: `/grow` keeps a
//! 4 MiB buffer (memory grows); `/trap` panics; `/exhaust` allocates 1 MiB
//! chunks until the memory limit stops it.

use std::cell::RefCell;

use scale_guest::{Context, Error};

struct Memory {
    runs: u64,
    previous: Vec<u8>,
    held: Vec<u8>,
}

thread_local! {
    static MEMORY: RefCell<Memory> = const { RefCell::new(Memory { runs: 0, previous: Vec::new(), held: Vec::new() }) };
}

#[scale_guest::function]
fn scale(ctx: &mut Context) -> Result<(), Error> {
    let body = ctx.request().body.clone();
    let uri = ctx.request().uri.clone();
    let answer = MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        memory.runs += 1;
        let mut answer = format!("{}:{}:", memory.runs, memory.held.len()).into_bytes();
        answer.extend_from_slice(&memory.previous);
        memory.previous = body.to_vec();
        if uri == "/grow" {
            memory.held = vec![7u8; 4 << 20];
        }
        answer
    });
    match uri.as_str() {
        "/trap" => panic!("guest panic"),
        "/exhaust" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
                std::hint::black_box(&hoard);
            }
        }
        _ => {
            ctx.response().set_body(answer);
            Ok(())
        }
    }
}
