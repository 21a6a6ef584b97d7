// Package signature is the HTTP signature of Scale Functions for guests
// written in Go: the context a function receives (the request and the
// response so far), its protobuf wire codec, and the glue that connects a
// function to the host through the guest ABI (version 2, see docs/abi.md in
// the repository).
//
// A function is an ordinary Go function:
//
//	func Scale(ctx *signature.Context) (*signature.Context, error) {
//		ctx.Response().SetBody("Hello, World!")
//		return ctx.Next()
//	}
//
// The build wraps it in a generated main package (../../scale-build/templates/go-main.go.tmpl)
// that calls [Register] from an init function, and compiles it with
// GOOS=wasip1 GOARCH=wasm and -buildmode=c-shared. The package's exports
// (scale_abi_version, resize, run) and imports (env.next, env.next_result,
// env.panic) are defined in abi_wasip1.go for the standard Go toolchain and
// in abi_tinygo.go for TinyGo (untested). Built for any other target the
// package still compiles, so functions can be unit-tested with go test;
// there [Context.Next] reports [ErrNoHost].
//
// The codec is written by hand, without reflection or the encoding packages,
// and produces exactly the canonical bytes of the Rust codec
// (crates/scale-signature-http/src/message.rs); the shared vectors in
// testdata/vectors hold the two together.
package signature
