//go:build !wasip1 && !tinygo

package signature

// Outside WebAssembly there is no host and no exports: the package builds so
// that functions can be unit-tested with go test, and Next reports ErrNoHost
// or runs the stand-in a test set with Context.SetNext.

func next(c *Context) (*Context, error) {
	if c.fakeNext == nil {
		return nil, ErrNoHost
	}
	copied, err := DecodeContext(c.Encode(nil))
	if err != nil {
		return nil, err
	}
	got, err := c.fakeNext(copied)
	if err != nil {
		return nil, err
	}
	if got == nil {
		got = copied
	}
	got.fakeNext = c.fakeNext
	return got, nil
}
