// Never returns: it increments a package-level counter forever, which the
// compiler cannot drop (the counter is visible outside the loop). For
// testing the host's CPU budget.
package scale

import signature "github.com/scale-rs/scale/crates/scale-signature-http/go"

// Counter is exported so that no compiler may prove its stores dead.
var Counter uint64

func Scale(ctx *signature.Context) (*signature.Context, error) {
	for {
		Counter++
	}
}
