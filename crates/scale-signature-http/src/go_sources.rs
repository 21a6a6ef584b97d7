//! The Go guest package of this signature, as source text.
//!
//! Build tools write these files into a module directory and point the Go
//! function's build at it, so that a Go function always builds against the
//! package matching this crate's wire format and ABI.

/// The Go module path of the package.
pub const MODULE_PATH: &str = "github.com/scale-rs/scale/crates/scale-signature-http/go";

/// The package's files (name, contents), without its tests.
pub const FILES: &[(&str, &str)] = &[
    ("go.mod", include_str!("../go/go.mod")),
    ("abi_native.go", include_str!("../go/abi_native.go")),
    ("abi_tinygo.go", include_str!("../go/abi_tinygo.go")),
    ("abi_wasip1.go", include_str!("../go/abi_wasip1.go")),
    ("abi_wasm.go", include_str!("../go/abi_wasm.go")),
    ("codec.go", include_str!("../go/codec.go")),
    ("context.go", include_str!("../go/context.go")),
    ("doc.go", include_str!("../go/doc.go")),
    ("guest.go", include_str!("../go/guest.go")),
    ("headers.go", include_str!("../go/headers.go")),
];
