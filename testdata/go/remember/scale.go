// Keeps state from one run to the next, for the isolation tests. Each run
// counts itself in a global and answers "<count>:<held>:<previous body>",
// where held is the size of the buffer kept by /grow runs, then keeps the
// request body on the heap for the next run. The request URI adds a fault
// after that: /grow keeps a 4 MiB buffer (memory grows); /trap panics;
// /exhaust allocates 1 MiB chunks until the memory limit stops it.
package scale

import (
	"strconv"

	signature "github.com/scale-rs/scale/crates/scale-signature-http/go"
)

// The state kept between runs; Chunks is exported so that no compiler may
// drop the allocations of /exhaust.
var (
	runs     uint64
	previous []byte
	held     []byte
	Chunks   [][]byte
)

func Scale(ctx *signature.Context) (*signature.Context, error) {
	body := ctx.Request().Body()
	uri := ctx.Request().URI()
	runs++
	answer := []byte(strconv.FormatUint(runs, 10) + ":" + strconv.Itoa(len(held)) + ":")
	answer = append(answer, previous...)
	previous = append([]byte(nil), body...)
	if uri == "/grow" {
		held = make([]byte, 4<<20)
		for i := range held {
			held[i] = 7
		}
	}
	switch uri {
	case "/trap":
		panic("guest panic")
	case "/exhaust":
		for {
			chunk := make([]byte, 1<<20)
			for i := 0; i < len(chunk); i += 4096 {
				chunk[i] = byte(len(Chunks))
			}
			Chunks = append(Chunks, chunk)
		}
	}
	ctx.Response().SetBodyBytes(answer)
	return ctx, nil
}
