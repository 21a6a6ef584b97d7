// Fails with the error "guest error".
package scale

import (
	"errors"

	signature "github.com/scale-rs/scale/crates/scale-signature-http/go"
)

func Scale(ctx *signature.Context) (*signature.Context, error) {
	return nil, errors.New("guest error")
}
