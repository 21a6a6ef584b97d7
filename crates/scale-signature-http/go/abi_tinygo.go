//go:build tinygo

package signature

// The guest ABI for TinyGo (0.27 or later: //export for the exports,
// //go:wasmimport for the imports). UNTESTED: TinyGo was not available when
// this was written. Build with -target=wasip1 (or wasi) and, so that the
// module is a reactor exporting _initialize, -buildmode=c-shared (TinyGo
// 0.33 or later). Older TinyGo releases do not support recover on
// WebAssembly: built with those, a panic traps without calling env.panic.
// The shared glue is in abi_wasm.go.

//go:wasmimport env next
func envNext(ptr, size, outPtr, outCap uint32) int32

//go:wasmimport env next_result
func envNextResult(outPtr, outCap uint32) int32

//go:wasmimport env panic
func envPanic(ptr, size uint32)

//export scale_abi_version
func scaleABIVersion() uint32 { return ABIVersion }

//export resize
func resize(size uint32) uint32 { return resizeExport(size) }

//export run
func run(size uint32) uint64 { return runExport(size) }
