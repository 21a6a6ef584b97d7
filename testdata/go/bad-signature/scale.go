// An ordinary function; what makes this fixture "bad" is the signature the
// fixture builder records for it (see README.md).
package scale

import signature "github.com/scale-rs/scale/crates/scale-signature-http/go"

func Scale(ctx *signature.Context) (*signature.Context, error) {
	return ctx, nil
}
