//! Test fixture `escape` (built for wasm32-wasip1): tries to get out of the
//! sandbox in the way the request URI names, with the request body as the
//! argument (a path, an address, a size or a count). An attempt the sandbox
//! refuses fails with "denied: <the error it got>"; one that got through
//! fails with "<attempt> was allowed". Attempts expected to work inside the
//! sandbox (`/env`, `/stdout`, `/next-many`, `/try-alloc` when it fits)
//! answer with what they saw in the response body, and so would `/listen`
//! if a listener could be made (it is kept open).

use std::io::Write;

use scale_guest::{Context, Error};

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    #[link_name = "next"]
    fn raw_next(ptr: u32, len: u32, out_ptr: u32, out_cap: u32) -> i32;
}

fn denied(err: impl std::fmt::Display) -> Error {
    Error::new(format_args!("denied: {err}"))
}

fn allowed(attempt: &str) -> Error {
    Error::new(format_args!("{attempt} was allowed"))
}

fn number(arg: &str) -> Result<u64, Error> {
    arg.parse().map_err(|err| Error::new(format_args!("{arg:?} is not a number: {err}")))
}

#[scale_guest::function]
fn scale(ctx: &mut Context) -> Result<(), Error> {
    let arg = String::from_utf8_lossy(&ctx.request().body).into_owned();
    let attempt = ctx.request().uri.clone();
    match attempt.as_str() {
        "/env" => {
            let home = std::env::var("HOME");
            let seen = format!(
                "env={} args={} home={}{}",
                std::env::vars_os().count(),
                std::env::args_os().count(),
                home.is_ok(),
                home.unwrap_or_default()
            );
            ctx.response().set_body_string(seen);
            Ok(())
        }
        "/read" => std::fs::read(&arg).map_err(denied).and(Err(allowed(&attempt))),
        "/create" => std::fs::write(&arg, b"escaped").map_err(denied).and(Err(allowed(&attempt))),
        "/mkdir" => std::fs::create_dir(&arg).map_err(denied).and(Err(allowed(&attempt))),
        "/remove" => std::fs::remove_file(&arg).map_err(denied).and(Err(allowed(&attempt))),
        "/readdir" => std::fs::read_dir(&arg).map_err(denied).and(Err(allowed(&attempt))),
        "/dial" => std::net::TcpStream::connect(&arg).map_err(denied).and(Err(allowed(&attempt))),
        "/listen" => {
            let listener = std::net::TcpListener::bind(&arg).map_err(denied)?;
            // Kept open, so that the host can check that it is none of its sockets.
            let addr = listener.local_addr().map_err(denied)?;
            std::mem::forget(listener);
            ctx.response().set_body_string(format!("in-guest listener on {addr}"));
            Ok(())
        }
        "/exit" => {
            eprintln!("leaving with code 7");
            std::process::exit(7)
        }
        "/stdout" => {
            let total = number(&arg)?;
            let chunk = vec![b'y'; 1 << 20];
            let mut out = std::io::stdout().lock();
            let mut written = 0u64;
            while written < total {
                let n = (total - written).min(chunk.len() as u64) as usize;
                out.write_all(&chunk[..n])
                    .map_err(|err| Error::new(format_args!("stdout refused after {written} bytes: {err}")))?;
                written += n as u64;
            }
            out.flush().map_err(|err| Error::new(format_args!("flushing stdout: {err}")))?;
            ctx.response().set_body_string(format!("wrote {written}"));
            Ok(())
        }
        "/try-alloc" => {
            // Asks the allocator for the given number of bytes, handling refusal.
            let size = number(&arg)? as usize;
            let mut block: Vec<u8> = Vec::new();
            block.try_reserve_exact(size).map_err(|err| Error::new(format_args!("allocation refused: {err}")))?;
            block.resize(size, 1);
            ctx.response().set_body_string(format!("allocated {}", std::hint::black_box(&block).len()));
            Ok(())
        }
        "/alloc" => {
            // Allocates the given number of bytes at once; failure aborts.
            let size = number(&arg)? as usize;
            let block = std::hint::black_box(vec![1u8; size]);
            ctx.response().set_body_string(format!("allocated {}", block.len()));
            Ok(())
        }
        "/next-many" => {
            let count = number(&arg)?;
            for i in 0..count {
                ctx.next().map_err(|err| Error::new(format_args!("next call {i} failed: {err}")))?;
            }
            ctx.response().set_body_string(format!("called next {count} times"));
            Ok(())
        }
        "/sleep" => {
            let seconds = number(&arg)?;
            std::thread::sleep(std::time::Duration::from_secs(seconds));
            ctx.response().set_body_string(format!("slept {seconds} s"));
            Ok(())
        }
        "/next-bad" => {
            // SAFETY: the host checks every pointer; these lie past the end of memory on purpose.
            let n = unsafe { raw_next(0xffff_0000, 64, 0xfff0_0000, 1 << 20) };
            Err(Error::new(format_args!("next with bad pointers returned {n}")))
        }
        other => Err(Error::new(format_args!("unknown attempt {other}"))),
    }
}
