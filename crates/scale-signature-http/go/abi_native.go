//go:build !wasip1 && !tinygo

package signature

// Outside WebAssembly there is no host and no exports: the package builds so
// that functions can be unit-tested with go test, and Next reports ErrNoHost.

func next(*Context) (*Context, error) {
	return nil, ErrNoHost
}
