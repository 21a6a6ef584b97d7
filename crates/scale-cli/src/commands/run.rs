//! `scale run <file.scale>...`

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use scale_signature_http::Response;

use crate::commands::read_scale;
use crate::commands::runtime_args::{Budget, Deadline, Defaults, RuntimeArgs};
use crate::display::reason_phrase;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The .scale files, run as a chain in this order (each function's next runs the one after it).
    #[arg(required = true, value_name = "FILE.scale")]
    files: Vec<PathBuf>,
    /// The request method.
    #[arg(long, short = 'X', default_value = "GET")]
    method: String,
    /// The request target (path and query).
    #[arg(long, short = 'u', default_value = "/")]
    uri: String,
    /// A request header, `name: value`; repeat for more (values of one name add up).
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// The request body.
    #[arg(long, short = 'd', conflicts_with = "body_file")]
    body: Option<String>,
    /// Read the request body from a file (`-` for standard input).
    #[arg(long, value_name = "PATH")]
    body_file: Option<PathBuf>,
    /// Print only the response body, not the status line and headers: its
    /// bytes exactly, plus a newline on a terminal when it does not end with
    /// one. Without it, the output always ends with a newline.
    #[arg(long)]
    body_only: bool,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

/// `name: value` → `(name, value)`, both trimmed.
fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text.split_once(':').ok_or_else(|| format!("{text:?} has no ':'; write `name: value`"))?;
    let name = name.trim();
    if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(format!("{name:?} is not a header name"));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

/// Runs the chain once and prints the response, like `curl -i`: the status
/// line and headers, a blank line, then the body as raw bytes, ended with a
/// newline when it has none (so the shell prompt starts on a line of its own).
pub fn run(args: Args) -> anyhow::Result<()> {
    // The runtime's warnings (a cache directory it cannot make, a slow
    // debug build) go to standard error; `RUST_LOG` can ask for more.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    let body = match (&args.body, &args.body_file) {
        (Some(body), _) => body.clone().into_bytes(),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut body = Vec::new();
            std::io::stdin().read_to_end(&mut body).context("cannot read the body from standard input")?;
            body
        }
        (None, Some(path)) => std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
        (None, None) => Vec::new(),
    };
    let functions = args.files.iter().map(|path| read_scale(path)).collect::<anyhow::Result<Vec<_>>>()?;
    let runtime =
        args.runtime.builder(functions, Defaults { budget: Budget::Unlimited, deadline: Deadline::Never }).build()?;
    let mut instance = runtime.instance()?;
    let request = &mut instance.context_mut().request;
    request.set_method(args.method).set_uri(args.uri).set_body(body);
    for (name, value) in args.headers {
        request.headers_mut().append(&name, value);
    }
    instance.run()?;
    let response = &instance.context().response;
    let mut out = Vec::with_capacity(response.body().len() + 256);
    if !args.body_only {
        write_head(&mut out, response);
    }
    out.extend_from_slice(response.body());
    let mut stdout = std::io::stdout().lock();
    let ends_line = response.body().is_empty() || response.body().ends_with(b"\n");
    if !ends_line && (!args.body_only || stdout.is_terminal()) {
        out.push(b'\n');
    }
    match stdout.write_all(&out).and_then(|()| stdout.flush()) {
        // `scale run ... | head` closing the pipe early is not an error.
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => result.context("cannot write the response to standard output"),
    }
}

/// The status line, one `name: value` line per header value, and a blank line.
fn write_head(out: &mut Vec<u8>, response: &Response) {
    let status = response.status_code();
    out.extend_from_slice(format!("HTTP/1.1 {status} {}", reason_phrase(status)).trim_end().as_bytes());
    out.extend_from_slice(b"\n");
    for (name, values) in response.headers().iter() {
        for value in values {
            out.extend_from_slice(format!("{}: {}\n", escape_controls(name), escape_controls(value)).as_bytes());
        }
    }
    out.extend_from_slice(b"\n");
}

/// Escapes control characters, so a header cannot forge lines of its own.
fn escape_controls(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() && c != '\t' { c.escape_default().to_string() } else { c.to_string() })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_and_trim() {
        assert_eq!(parse_header("X-Test: a: b ").unwrap(), ("X-Test".into(), "a: b".into()));
        assert_eq!(parse_header("x:").unwrap(), ("x".into(), String::new()));
        assert!(parse_header("no colon").is_err());
        assert!(parse_header(": value").is_err());
        assert!(parse_header("two words: value").is_err());
    }

    #[test]
    fn the_head_escapes_control_characters() {
        let mut response = Response::default();
        response.set_status_code(299).unwrap();
        response.headers_mut().set("x-evil", ["a\r\nset-cookie: b"]);
        let mut out = Vec::new();
        write_head(&mut out, &response);
        assert_eq!(String::from_utf8(out).unwrap(), "HTTP/1.1 299\nx-evil: a\\r\\nset-cookie: b\n\n");
    }
}
