// Writes the first value of request header x-test-header ("" when there is
// none) to response header x-response, and sets response header x-multi to
// ["a", "b"].
package scale

import signature "github.com/scale-rs/scale/crates/scale-signature-http/go"

func Scale(ctx *signature.Context) (*signature.Context, error) {
	headers := ctx.Response().Headers()
	headers.Set("x-response", []string{ctx.Request().Headers().First("x-test-header")})
	headers.Set("x-multi", []string{"a", "b"})
	return ctx, nil
}
