//! The shared test vectors in `testdata/vectors/`, which the Go codec's tests
//! read too. Each vector is built here from its description, encoded, and
//! compared byte for byte with the file; the file is then decoded and compared
//! with the value. `SCALE_UPDATE_VECTORS=1 cargo test` rewrites the files
//! (review the diff: a change of bytes is a change of the wire format).

use std::path::PathBuf;

use scale_signature_http::{Bytes, Context, Headers, RunResult};

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/vectors")
}

/// A body of `len` bytes that is not all one value: byte `i` is `i % 251`.
fn patterned_body(len: usize) -> Bytes {
    (0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into()
}

fn all_fields() -> Context {
    let mut ctx = Context::default();
    let request = ctx.request_mut();
    request.set_method("POST").set_uri("/api/v1/items?limit=10").set_body_string("{\"name\":\"scale\"}");
    request.protocol = "HTTP/2".into();
    request.ip = "192.0.2.17".into();
    request.headers_mut().set("content-type", ["application/json"]).set("x-request-id", ["abc-123"]);
    let response = ctx.response_mut();
    response.set_status_code(201).unwrap().set_body_string("created");
    response.headers_mut().set("location", ["/api/v1/items/42"]);
    ctx
}

fn unicode_headers() -> Context {
    let mut ctx = Context::default();
    ctx.request_mut().headers_mut().set("x-greeting", ["héllo wörld", "こんにちは", "🦀"]);
    ctx.response_mut().headers_mut().set("x-émoji", ["✓"]);
    ctx
}

fn multi_valued_headers() -> Context {
    let mut ctx = Context::default();
    ctx.request_mut().headers_mut().set("accept", ["text/html", "application/json", ""]).set("cookie", ["a=1", "b=2"]);
    ctx.response_mut()
        .headers_mut()
        .set("set-cookie", ["a=1; Path=/", "b=2; HttpOnly"])
        .set("empty", Vec::<String>::new());
    ctx
}

fn large_body() -> Context {
    let mut ctx = Context::default();
    ctx.request_mut().set_body(patterned_body(1 << 20));
    ctx.response_mut().set_body(patterned_body(1 << 20));
    ctx
}

fn non_default_empty() -> Context {
    let mut ctx = Context::default();
    ctx.request.method = String::new();
    ctx.request.protocol = String::new();
    ctx.response.status_code = 0;
    ctx
}

fn raw_header_names() -> Context {
    let mut ctx = Context::default();
    let headers: Headers = [("X-Mixed-Case", vec!["kept".to_string()])].into_iter().collect();
    ctx.request.headers = headers;
    ctx
}

enum Vector {
    Context(Context),
    Result(RunResult),
}

impl Vector {
    fn encode(&self) -> Vec<u8> {
        match self {
            Vector::Context(ctx) => ctx.encode_to_vec(),
            Vector::Result(result) => result.encode_to_vec(),
        }
    }

    fn check_decodes(&self, name: &str, bytes: &[u8]) {
        match self {
            Vector::Context(ctx) => assert_eq!(&Context::decode(bytes).unwrap(), ctx, "{name}"),
            Vector::Result(result) => assert_eq!(&RunResult::decode(bytes).unwrap(), result, "{name}"),
        }
    }
}

fn vectors() -> Vec<(&'static str, Vector)> {
    vec![
        ("empty_context", Vector::Context(Context::default())),
        ("all_fields", Vector::Context(all_fields())),
        ("unicode_headers", Vector::Context(unicode_headers())),
        ("multi_valued_headers", Vector::Context(multi_valued_headers())),
        ("large_body", Vector::Context(large_body())),
        ("non_default_empty", Vector::Context(non_default_empty())),
        ("raw_header_names", Vector::Context(raw_header_names())),
        ("result_context", Vector::Result(RunResult::Context(all_fields()))),
        ("result_error", Vector::Result(RunResult::Error("guest error: ünïcode ✗".into()))),
        ("result_empty_error", Vector::Result(RunResult::Error(String::new()))),
    ]
}

#[test]
fn shared_vectors_match_byte_for_byte() {
    let update = std::env::var_os("SCALE_UPDATE_VECTORS").is_some();
    let dir = vectors_dir();
    let listed: Vec<String> = std::fs::read_to_string(dir.join("manifest.txt"))
        .expect("testdata/vectors/manifest.txt")
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| line.split_whitespace().next().unwrap().to_string())
        .collect();
    let vectors = vectors();
    let names: Vec<&str> = vectors.iter().map(|(name, _)| *name).collect();
    assert_eq!(listed, names, "manifest.txt and this test must list the same vectors, in order");

    for (name, vector) in vectors {
        let path = dir.join(format!("{name}.bin"));
        let encoded = vector.encode();
        if update {
            std::fs::write(&path, &encoded).unwrap();
        }
        let on_disk = std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        assert!(encoded == on_disk, "{name}: encoding differs from {}", path.display());
        vector.check_decodes(name, &on_disk);
    }
}

#[test]
fn truncated_vectors_are_refused() {
    for (name, vector) in vectors() {
        let bytes = vector.encode();
        // Every vector is a sequence of length-delimited top-level fields, so a
        // cut after the first byte, before the last byte, or (in a long
        // vector) in the middle of the body leaves a field that runs past the
        // end, which must be an error.
        let mut cuts = vec![1, bytes.len() - 1];
        if bytes.len() > 1 << 20 {
            cuts.push(bytes.len() / 2);
        }
        for cut in cuts {
            let err = match &vector {
                Vector::Context(_) => Context::decode(&bytes[..cut]).map(drop).unwrap_err(),
                Vector::Result(_) => RunResult::decode(&bytes[..cut]).map(drop).unwrap_err(),
            };
            assert!(err.to_string().contains("malformed"), "{name} cut at {cut}: {err}");
        }
    }
}
