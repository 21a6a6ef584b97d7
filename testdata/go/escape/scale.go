// Tries to get out of the sandbox in the way the request URI names, with the
// request body as the argument (a path, an address, a size or a count). An
// attempt the sandbox refuses fails with "denied: <the error it got>"; one
// that got through fails with "<attempt> was allowed". Attempts that are
// expected to work inside the sandbox (/env, /stdout, /next-many) answer
// with what they saw in the response body, and so does /listen when the
// guest's own (simulated) network lets it listen. /sleep sleeps for the
// given number of seconds.
package scale

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	signature "github.com/scale-rs/scale/crates/scale-signature-http/go"
)

//go:wasmimport env next
func rawNext(ptr, size, outPtr, outCap uint32) int32

// Listeners keeps the listeners of /listen open across runs.
var Listeners []net.Listener

func denied(err error) error { return fmt.Errorf("denied: %w", err) }

func allowed(attempt string) error { return errors.New(attempt + " was allowed") }

func Scale(ctx *signature.Context) (*signature.Context, error) {
	arg := string(ctx.Request().Body())
	attempt := ctx.Request().URI()
	switch attempt {
	case "/env":
		// Everything the process can see of its environment and arguments.
		home, hasHome := os.LookupEnv("HOME")
		ctx.Response().SetBody(fmt.Sprintf("env=%d args=%d home=%v%s", len(os.Environ()), len(os.Args), hasHome, home))
		return ctx, nil
	case "/read":
		if _, err := os.ReadFile(arg); err != nil {
			return nil, denied(err)
		}
		return nil, allowed(attempt)
	case "/create":
		if err := os.WriteFile(arg, []byte("escaped"), 0o644); err != nil {
			return nil, denied(err)
		}
		return nil, allowed(attempt)
	case "/mkdir":
		if err := os.Mkdir(arg, 0o755); err != nil {
			return nil, denied(err)
		}
		return nil, allowed(attempt)
	case "/remove":
		if err := os.Remove(arg); err != nil {
			return nil, denied(err)
		}
		return nil, allowed(attempt)
	case "/readdir":
		if _, err := os.ReadDir(arg); err != nil {
			return nil, denied(err)
		}
		return nil, allowed(attempt)
	case "/dial":
		conn, err := net.Dial("tcp", arg)
		if err != nil {
			return nil, denied(err)
		}
		conn.Close()
		return nil, allowed(attempt)
	case "/listen":
		// Go's wasip1 network is simulated inside the guest, so this may
		// succeed; the listener is kept open so that the host can check
		// that no socket of its own is listening.
		listener, err := net.Listen("tcp", arg)
		if err != nil {
			return nil, denied(err)
		}
		Listeners = append(Listeners, listener)
		ctx.Response().SetBody("in-guest listener on " + listener.Addr().String())
		return ctx, nil
	case "/exit":
		fmt.Fprintln(os.Stderr, "leaving with code 7")
		os.Exit(7)
	case "/stdout":
		// Writes the given number of bytes to standard output, 1 MiB at a time.
		total, err := strconv.ParseInt(arg, 10, 64)
		if err != nil {
			return nil, err
		}
		chunk := []byte(strings.Repeat("y", 1<<20))
		var written int64
		for written < total {
			n := min(int64(len(chunk)), total-written)
			m, err := os.Stdout.Write(chunk[:n])
			written += int64(m)
			if err != nil {
				return nil, fmt.Errorf("stdout refused after %d bytes: %w", written, err)
			}
		}
		ctx.Response().SetBody(fmt.Sprintf("wrote %d", written))
		return ctx, nil
	case "/alloc":
		// Allocates the given number of bytes at once and touches every page.
		size, err := strconv.Atoi(arg)
		if err != nil {
			return nil, err
		}
		block := make([]byte, size)
		for i := 0; i < len(block); i += 4096 {
			block[i] = 1
		}
		ctx.Response().SetBody(fmt.Sprintf("allocated %d", len(block)))
		return ctx, nil
	case "/next-many":
		// Calls Next the given number of times; each call runs the rest of the chain.
		count, err := strconv.Atoi(arg)
		if err != nil {
			return nil, err
		}
		for i := 0; i < count; i++ {
			if _, err := ctx.Next(); err != nil {
				return nil, fmt.Errorf("next call %d failed: %w", i, err)
			}
		}
		ctx.Response().SetBody(fmt.Sprintf("called next %d times", count))
		return ctx, nil
	case "/sleep":
		// Sleeps for the given number of seconds.
		seconds, err := strconv.Atoi(arg)
		if err != nil {
			return nil, err
		}
		time.Sleep(time.Duration(seconds) * time.Second)
		ctx.Response().SetBody(fmt.Sprintf("slept %d s", seconds))
		return ctx, nil
	case "/next-bad":
		// Hands next a context and an answer buffer far past the end of memory.
		n := rawNext(0xffff_0000, 64, 0xfff0_0000, 1<<20)
		return nil, fmt.Errorf("next with bad pointers returned %d", n)
	}
	return nil, errors.New("unknown attempt " + attempt)
}
