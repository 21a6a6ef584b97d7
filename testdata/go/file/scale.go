// Tries to read /etc/passwd, which the sandbox must refuse: fails with the
// error of the read, or with "file access was allowed" if it succeeded.
package scale

import (
	"errors"
	"os"

	signature "github.com/scale-rs/scale/crates/scale-signature-http/go"
)

func Scale(ctx *signature.Context) (*signature.Context, error) {
	if _, err := os.ReadFile("/etc/passwd"); err != nil {
		return nil, err
	}
	return nil, errors.New("file access was allowed")
}
