// Appends "-modified" to the response body and stops the chain (no Next).
package scale

import signature "github.com/scale-rs/scale/crates/scale-signature-http/go"

func Scale(ctx *signature.Context) (*signature.Context, error) {
	resp := ctx.Response()
	resp.SetBody(string(resp.Body()) + "-modified")
	return ctx, nil
}
