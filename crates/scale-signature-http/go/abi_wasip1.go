//go:build wasip1 && !tinygo

package signature

// The guest ABI for the standard Go toolchain (GOOS=wasip1 GOARCH=wasm,
// -buildmode=c-shared): exports with //go:wasmexport (Go 1.24 or later,
// allowed in any package), imports with //go:wasmimport. The shared glue is
// in abi_wasm.go.

//go:wasmimport env next
func envNext(ptr, size, outPtr, outCap uint32) int32

//go:wasmimport env next_result
func envNextResult(outPtr, outCap uint32) int32

//go:wasmimport env panic
func envPanic(ptr, size uint32)

//go:wasmexport scale_abi_version
func scaleABIVersion() uint32 { return ABIVersion }

//go:wasmexport resize
func resize(size uint32) uint32 { return resizeExport(size) }

//go:wasmexport run
func run(size uint32) uint64 { return runExport(size) }
