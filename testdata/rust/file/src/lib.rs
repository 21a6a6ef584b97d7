//! Test fixture `file`: Tries to read a host file (built for wasm32-wasip1) and returns the error it gets.

use scale_guest::{Context, Error};

#[scale_guest::function]
fn scale(_ctx: &mut Context) -> Result<(), Error> {
    match std::fs::read("/etc/passwd") {
        Ok(_) => Err(Error::from("file access was allowed")),
        Err(err) => Err(Error::new(format_args!("file access denied: {err}"))),
    }
}
