//! Runs a `.scale` function once from Rust, with a native handler after it.
//!
//! ```text
//! cargo xtask fixtures
//! cargo run -p scale-runtime --example embed -- target/fixtures/go/http-next.scale
//! ```
use scale_runtime::{Runtime, ScaleFunc};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).unwrap_or_else(|| "target/fixtures/rust/http-next.scale".into());
    let function = ScaleFunc::decode(&std::fs::read(&path)?)?;
    let runtime = Runtime::new([function])?;

    // Native handlers run when the last function calls `next`.
    let mut instance = runtime.instance()?.with_handler(|ctx| {
        ctx.response.headers_mut().set("x-handled-by", ["rust"]);
        Ok(())
    });
    instance.context_mut().request.set_uri("/hello");
    instance.context_mut().response.set_body_string("Hello from the host");
    instance.run()?;

    let response = &instance.context().response;
    println!("{} {:?}", response.status_code, response.headers);
    println!("{}", String::from_utf8_lossy(&response.body));
    Ok(())
}
