package signature

// The target-independent half of the guest ABI (docs/abi.md, version 2):
// what the run export does with its bytes and how Next talks to the host.
// abi_wasip1.go and abi_tinygo.go connect it to the real exports and
// imports; abi_native.go stands in for them outside WebAssembly. Keeping the
// logic here lets go test exercise it natively against a fake host.

import (
	"errors"
	"strconv"
)

// ABIVersion is the version of the guest ABI this package implements,
// returned by the scale_abi_version export.
const ABIVersion = 2

// Function is a Scale function: it gets the context of a run and returns
// the context to answer with, or an error that ends the run with its message.
type Function func(ctx *Context) (*Context, error)

// Register makes fn the function that the run export calls. The generated
// main package calls it from an init function; a later call replaces the
// function registered before.
func Register(fn func(ctx *Context) (*Context, error)) {
	guest.fn = fn
}

// ErrNoHost is what [Context.Next] returns outside a Scale host, for example
// when a function is unit-tested with go test.
var ErrNoHost = errors.New("next: not running inside a Scale host")

// ErrNotInRun is what [Context.Next] returns inside a Scale host when it is
// called outside a run (from an init function, or from a goroutine that
// outlived the run that started it): the host accepts next only while the
// guest is inside its run export.
var ErrNotInRun = errors.New("next: called outside a run")

// ChainError is the error the rest of the chain ended with, as
// [Context.Next] reports it. Its Error method returns the message exactly,
// so a function that returns it passes the same message on.
type ChainError struct {
	// Message is the error message the host sent back.
	Message string
}

func (e *ChainError) Error() string { return e.Message }

// ProtocolError is what [Context.Next] returns when the host's answer to
// next does not follow the ABI (a length that does not fit, or bytes that
// are not a RunResult). It points at a bug in the host.
type ProtocolError struct {
	// Returned is the value the host import returned.
	Returned int32
	// Err is the decoding error, when the answer was not a RunResult.
	Err error
}

func (e *ProtocolError) Error() string {
	if e.Err != nil {
		return "next: the host's answer is not a run result: " + e.Err.Error()
	}
	return "next: the host answered outside the ABI (returned " + strconv.Itoa(int(e.Returned)) + ")"
}

func (e *ProtocolError) Unwrap() error { return e.Err }

// minNextBuffer is how large the buffer for the answers to next starts: most
// answers fit at once.
const minNextBuffer = 4096

// guestState holds the registered function and the guest's buffers. They
// live in a package variable, so the garbage collector keeps them, and Go's
// collector does not move heap objects, so an address handed to the host
// stays valid for as long as the slice is kept here.
type guestState struct {
	fn Function
	// input is placed by resize; the host writes each run's context there.
	input []byte
	// output holds the RunResult that run returns, until the next run.
	output []byte
	// request holds the context handed to next.
	request []byte
	// answer receives the host's answers to next.
	answer []byte
	// running is true while the run export is calling the function.
	running bool
}

var guest guestState

// nextHost is the host's side of next as the guest sees it: the env.next
// and env.next_result imports over byte slices.
type nextHost interface {
	// next hands context to the rest of the chain; the host writes the
	// answer into out and returns its length, or returns minus its length
	// when out is too small.
	next(context, out []byte) int32
	// nextResult copies the answer kept by the host into out.
	nextResult(out []byte) int32
}

// resizeInput makes the input buffer at least size bytes long, keeping it
// (and its address) when it already is, and returns it.
func (g *guestState) resizeInput(size uint32) []byte {
	if uint64(len(g.input)) < uint64(size) {
		// Exactly the size asked: the host never writes more than that.
		g.input = make([]byte, size)
	}
	return g.input
}

// run runs the registered function on the first size bytes of the input
// buffer and returns the encoded RunResult, which stays in g.output until
// the next run. report is told the message of a panic before it goes on.
func (g *guestState) run(size uint32, report func(string)) []byte {
	input := g.input
	if uint64(size) < uint64(len(input)) {
		input = input[:size]
	}
	g.running = true
	g.output = handleRun(input, g.output[:0], g.fn, report)
	g.running = false
	return g.output
}

// handleRun decodes a context from input, calls fn on it and appends the
// encoded RunResult to out:
//   - the context fn returns, or the context it was given when it returns
//     nil and no error (so a function may change ctx in place and return
//     nil, nil);
//   - the message of the error fn returns (an error wins over a context);
//   - an error when input is not a context or no function is registered.
//
// When fn panics, report gets the panic's message and the panic goes on.
func handleRun(input, out []byte, fn Function, report func(string)) []byte {
	ctx, err := decodeRunContext(input)
	if err != nil {
		return EncodeErrorResult(out, undecodable+err.Error())
	}
	if fn == nil {
		return EncodeErrorResult(out, "no Scale function is registered (signature.Register was never called)")
	}
	result, message, failed := callFunction(fn, ctx, report)
	// A request that turned out not to decode when the function asked for it
	// fails the run, whatever the function did.
	if ctx.requestErr != nil {
		return EncodeErrorResult(out, undecodable+ctx.requestErr.Error())
	}
	if failed {
		return EncodeErrorResult(out, message)
	}
	if result == nil {
		result = ctx
	}
	return EncodeContextResult(out, result)
}

// undecodable starts the message of a run whose input does not decode.
const undecodable = "the host sent a context the guest cannot decode: "

// callFunction calls fn, reporting a panic (of fn, or of its error's Error
// method) before letting it go on.
func callFunction(fn Function, ctx *Context, report func(string)) (result *Context, message string, failed bool) {
	defer func() {
		if r := recover(); r != nil {
			report(panicMessage(r))
			panic(r)
		}
	}()
	result, err := fn(ctx)
	if err != nil {
		return nil, err.Error(), true
	}
	return result, "", false
}

// panicMessage describes a recovered panic value without the fmt package.
func panicMessage(r any) string {
	switch v := r.(type) {
	case error:
		return v.Error()
	case string:
		return v
	case interface{ String() string }:
		return v.String()
	case int:
		return strconv.Itoa(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case int32:
		return strconv.FormatInt(int64(v), 10)
	case uint:
		return strconv.FormatUint(uint64(v), 10)
	case uint64:
		return strconv.FormatUint(v, 10)
	case uint32:
		return strconv.FormatUint(uint64(v), 10)
	case bool:
		return strconv.FormatBool(v)
	default:
		return "panic with a value of a type the guest cannot print"
	}
}

// callNext hands ctx to the rest of the chain through host and decodes the
// answer, using g's request and answer buffers (never the input or output
// buffer, which the run in progress still uses).
func (g *guestState) callNext(host nextHost, ctx *Context) (*Context, error) {
	if !g.running {
		return nil, ErrNotInRun
	}
	if ctx.requestErr != nil {
		return nil, ctx.requestErr
	}
	g.request = ctx.Encode(g.request[:0])
	if len(g.answer) < minNextBuffer {
		g.answer = make([]byte, minNextBuffer)
	}
	returned := host.next(g.request, g.answer)
	var size int
	switch {
	case returned == 0:
		// The chain ended there with no native handlers and gave ctx back
		// unchanged; the host wrote nothing (ABI version 2).
		return ctx, nil
	case returned > 0 && int64(returned) <= int64(len(g.answer)):
		size = int(returned)
	case returned < 0:
		need := -int64(returned)
		if need > int64(len(g.answer)) {
			g.answer = make([]byte, need)
		}
		got := host.nextResult(g.answer)
		if int64(got) != need {
			return nil, &ProtocolError{Returned: got}
		}
		size = int(need)
	default:
		return nil, &ProtocolError{Returned: returned}
	}
	result, err := DecodeRunResult(g.answer[:size])
	if err != nil {
		return nil, &ProtocolError{Returned: returned, Err: err}
	}
	if result.Failed {
		return nil, &ChainError{Message: result.Message}
	}
	return result.Context, nil
}
