// Hands the context on, then appends "-after" to the response body and sets
// response header x-after to "yes".
package scale

import signature "github.com/scale-rs/scale/crates/scale-signature-http/go"

func Scale(ctx *signature.Context) (*signature.Context, error) {
	ctx, err := ctx.Next()
	if err != nil {
		return nil, err
	}
	resp := ctx.Response()
	resp.SetBody(string(resp.Body()) + "-after")
	resp.Headers().Set("x-after", []string{"yes"})
	return ctx, nil
}
