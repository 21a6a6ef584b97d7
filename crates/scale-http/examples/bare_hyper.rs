//! A bare hyper 1 server answering "Hello, World!\n": the baseline of the
//! load test (`cargo xtask loadtest`), which compares it with `scale serve`
//! running its built-in hello function.
//!
//! ```text
//! cargo run --release -p scale-http --example bare_hyper -- --listen 127.0.0.1:8081
//! curl -i localhost:8081
//! ```
//! It answers like the built-in function (status 200, the same body and
//! `content-type`) and serves connections the way `scale_http::serve` does
//! (HTTP/1.1 with keep-alive, a header read timeout, tokio's multi-threaded
//! runtime with its default worker count), but runs no function.
use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;

const BODY: &[u8] = b"Hello, World!\n";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut listen: SocketAddr = "127.0.0.1:8081".parse()?;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" | "-l" => listen = args.next().ok_or("--listen needs an address")?.parse()?,
            other => return Err(format!("unknown argument {other:?} (usage: bare_hyper [--listen ADDR])").into()),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(serve(listen))
}

async fn serve(listen: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    // The load test reads the address from this line, as it does from `scale serve`'s.
    eprintln!("serving bare hyper on http://{}", listener.local_addr()?);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(scale_http::HEADER_READ_TIMEOUT);
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                eprintln!("accept failed: {err}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let connection =
            builder.serve_connection(hyper_util::rt::TokioIo::new(stream), hyper::service::service_fn(hello));
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}

async fn hello(_request: http::Request<hyper::body::Incoming>) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let mut response = http::Response::new(Full::new(Bytes::from_static(BODY)));
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    Ok(response)
}
