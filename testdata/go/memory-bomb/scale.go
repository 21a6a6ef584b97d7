// Allocates 1 MiB chunks forever, keeping each one reachable from a package
// variable, until the host's memory limit stops it.
package scale

import signature "github.com/scale-rs/scale/crates/scale-signature-http/go"

// Chunks is exported so that the allocations stay reachable.
var Chunks [][]byte

func Scale(ctx *signature.Context) (*signature.Context, error) {
	for {
		chunk := make([]byte, 1<<20)
		// Touch every page, so the memory is really used.
		for i := 0; i < len(chunk); i += 4096 {
			chunk[i] = byte(len(Chunks))
		}
		Chunks = append(Chunks, chunk)
	}
}
