module github.com/scale-rs/scale/crates/scale-signature-http/go

go 1.24
