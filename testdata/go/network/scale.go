// Tries to open a TCP connection, which the sandbox must refuse: fails with
// the error of the dial, or with "network access was allowed" if it
// succeeded.
package scale

import (
	"errors"
	"net"

	signature "github.com/scale-rs/scale/crates/scale-signature-http/go"
)

func Scale(ctx *signature.Context) (*signature.Context, error) {
	conn, err := net.Dial("tcp", "127.0.0.1:80")
	if err != nil {
		return nil, err
	}
	conn.Close()
	return nil, errors.New("network access was allowed")
}
