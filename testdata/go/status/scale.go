// Sets the response status to 201.
package scale

import signature "github.com/scale-rs/scale/crates/scale-signature-http/go"

func Scale(ctx *signature.Context) (*signature.Context, error) {
	if err := ctx.Response().SetStatusCode(201); err != nil {
		return nil, err
	}
	return ctx, nil
}
