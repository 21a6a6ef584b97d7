// Answers with the request body as the response body.
package scale

import signature "github.com/scale-rs/scale/crates/scale-signature-http/go"

func Scale(ctx *signature.Context) (*signature.Context, error) {
	ctx.Response().SetBodyBytes(ctx.Request().Body())
	return ctx, nil
}
