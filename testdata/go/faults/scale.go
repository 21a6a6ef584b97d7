// One function for the fault-injection soak: the request URI picks what it
// does, so that good and bad runs share one pool. /echo answers with the
// request body; /error fails with "guest error"; /panic panics with "guest
// panic"; /loop never returns; /bomb allocates 1 MiB chunks until the memory
// limit stops it.
package scale

import (
	"errors"

	signature "github.com/scale-rs/scale/crates/scale-signature-http/go"
)

// Counter and Chunks are exported so that no compiler may drop the loops' work.
var (
	Counter uint64
	Chunks  [][]byte
)

func Scale(ctx *signature.Context) (*signature.Context, error) {
	switch uri := ctx.Request().URI(); uri {
	case "/echo":
		ctx.Response().SetBodyBytes(ctx.Request().Body())
		return ctx, nil
	case "/error":
		return nil, errors.New("guest error")
	case "/panic":
		panic("guest panic")
	case "/loop":
		for {
			Counter++
		}
	case "/bomb":
		for {
			chunk := make([]byte, 1<<20)
			for i := 0; i < len(chunk); i += 4096 {
				chunk[i] = byte(len(Chunks))
			}
			Chunks = append(Chunks, chunk)
		}
	default:
		return nil, errors.New("unknown fault " + uri)
	}
}
