module fixture/remember

go 1.24

require github.com/scale-rs/scale/crates/scale-signature-http/go v0.0.0

replace github.com/scale-rs/scale/crates/scale-signature-http/go => ../../../crates/scale-signature-http/go
