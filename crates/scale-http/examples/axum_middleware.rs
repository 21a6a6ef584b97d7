//! A Scale function as middleware in front of an axum app.
//!
//! ```text
//! cargo xtask fixtures
//! cargo run -p scale-http --example axum_middleware -- target/fixtures/go/http-next.scale
//! curl -i localhost:8080/hello
//! ```
//! Every request runs through the function first; when it calls `next`, the
//! request goes on to the axum router, whose response flows back through it.
use axum::routing::get;
use scale_http::ScaleService;
use scale_runtime::{Runtime, ScaleFunc};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).unwrap_or_else(|| "target/fixtures/rust/http-next.scale".into());
    let runtime = Runtime::new([ScaleFunc::decode(&std::fs::read(&path)?)?])?;

    let app = axum::Router::new().route("/hello", get(|| async { "Hello from axum\n" }));
    let service = ScaleService::new(runtime).with_downstream(app);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    println!("listening on http://{}", listener.local_addr()?);
    scale_http::serve(listener, service, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
