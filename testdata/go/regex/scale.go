// The regex benchmark of upstream Scale: replaces every four-letter word of
// the request body with "wasm", answers with the result as the response
// body, then calls Next.
package scale

import (
	"regexp"

	signature "github.com/scale-rs/scale/crates/scale-signature-http/go"
)

// Compiled once, when the module starts.
var fourLetterWord = regexp.MustCompile(`\b\w{4}\b`)

var wasm = []byte("wasm")

func Scale(ctx *signature.Context) (*signature.Context, error) {
	ctx.Response().SetBodyBytes(fourLetterWord.ReplaceAll(ctx.Request().Body(), wasm))
	return ctx.Next()
}
