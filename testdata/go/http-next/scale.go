// Appends "-modified" to the response body, then hands the context on.
package scale

import signature "github.com/scale-rs/scale/crates/scale-signature-http/go"

func Scale(ctx *signature.Context) (*signature.Context, error) {
	resp := ctx.Response()
	resp.SetBody(string(resp.Body()) + "-modified")
	return ctx.Next()
}
