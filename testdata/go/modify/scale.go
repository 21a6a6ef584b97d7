// Sets the response body to "modified" and stops the chain (no Next).
package scale

import signature "github.com/scale-rs/scale/crates/scale-signature-http/go"

func Scale(ctx *signature.Context) (*signature.Context, error) {
	ctx.Response().SetBody("modified")
	return ctx, nil
}
