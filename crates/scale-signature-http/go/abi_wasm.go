//go:build (wasip1 && !tinygo) || tinygo

package signature

// What abi_wasip1.go and abi_tinygo.go share: the bodies of the exports and
// the host behind Next, over the env imports they declare.

import (
	"runtime"
	"unsafe"
)

// addr is the address of b's first byte in linear memory (0 when b is empty).
func addr(b []byte) uint32 {
	if len(b) == 0 {
		return 0
	}
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
}

// resizeExport is the body of the resize export.
func resizeExport(size uint32) uint32 {
	return addr(guest.resizeInput(size))
}

// runExport is the body of the run export: the packed pointer and length of
// the encoded RunResult, which stays in guest.output until the next run.
func runExport(size uint32) uint64 {
	out := guest.run(size, reportPanic)
	return uint64(addr(out))<<32 | uint64(len(out))
}

// reportPanic hands a panic message to env.panic before the guest traps.
func reportPanic(message string) {
	b := []byte(wireString(message))
	envPanic(addr(b), uint32(len(b)))
	runtime.KeepAlive(b)
}

// wasmHost is the real host, reached through the env imports. The slices it
// is given are guest.request and guest.answer, which the package variable
// keeps alive while the host uses them.
type wasmHost struct{}

func (wasmHost) next(context, out []byte) int32 {
	n := envNext(addr(context), uint32(len(context)), addr(out), uint32(len(out)))
	runtime.KeepAlive(context)
	runtime.KeepAlive(out)
	return n
}

func (wasmHost) nextResult(out []byte) int32 {
	n := envNextResult(addr(out), uint32(len(out)))
	runtime.KeepAlive(out)
	return n
}

func next(c *Context) (*Context, error) {
	return guest.callNext(wasmHost{}, c)
}
