package signature

import (
	"errors"
	"strings"
	"testing"
)

// fakeHost answers next as the real host does: it decodes the context, runs
// chain on it, and writes the RunResult into out or keeps it when it does
// not fit.
type fakeHost struct {
	chain           func(*Context) (*Context, error)
	unchanged       bool // answer 0, as the host does where the chain ends with no handlers
	kept            []byte
	nextCalls       int
	nextResultCalls int
	lastCap         int
}

func (h *fakeHost) next(context, out []byte) int32 {
	h.nextCalls++
	h.lastCap = len(out)
	ctx, err := DecodeContext(context)
	if err != nil {
		panic("the guest sent a bad context: " + err.Error())
	}
	if h.unchanged {
		return 0
	}
	var answer []byte
	if result, err := h.chain(ctx); err != nil {
		answer = EncodeErrorResult(nil, err.Error())
	} else {
		answer = EncodeContextResult(nil, result)
	}
	if len(answer) <= len(out) {
		return int32(copy(out, answer))
	}
	h.kept = answer
	return -int32(len(answer))
}

func (h *fakeHost) nextResult(out []byte) int32 {
	h.nextResultCalls++
	switch {
	case h.kept == nil:
		return 0
	case len(h.kept) > len(out):
		return -int32(len(h.kept))
	}
	n := copy(out, h.kept)
	h.kept = nil
	return int32(n)
}

// fixedHost returns fixed values from the imports.
type fixedHost struct {
	answer, kept int32 // what next and next_result return
	write        []byte
}

func (h fixedHost) next(_, out []byte) int32 {
	copy(out, h.write)
	return h.answer
}
func (h fixedHost) nextResult(out []byte) int32 {
	copy(out, h.write)
	return h.kept
}

func running() *guestState { return &guestState{running: true} }

func TestCallNextWithAnAnswerThatFits(t *testing.T) {
	g := running()
	host := &fakeHost{chain: func(c *Context) (*Context, error) {
		c.Response().SetBody(string(c.Response().Body()) + " world")
		return c, nil
	}}
	ctx := NewContext()
	ctx.Response().SetBody("hello")
	got, err := g.callNext(host, ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Response().Body()) != "hello world" || string(ctx.Response().Body()) != "hello" {
		t.Fatalf("got %q, ctx %q", got.Response().Body(), ctx.Response().Body())
	}
	if host.nextResultCalls != 0 || host.lastCap != minNextBuffer {
		t.Fatalf("next_result called %d times, out_cap %d", host.nextResultCalls, host.lastCap)
	}
}

func TestCallNextWithAnAnswerTooLarge(t *testing.T) {
	g := running()
	big := strings.Repeat("x", 3*minNextBuffer)
	host := &fakeHost{chain: func(c *Context) (*Context, error) {
		c.Response().SetBody(big)
		return c, nil
	}}
	for round := range 2 {
		got, err := g.callNext(host, NewContext())
		if err != nil {
			t.Fatal(err)
		}
		if string(got.Response().Body()) != big {
			t.Fatal("body lost")
		}
		// The buffer grows once; in the second round the answer fits at once.
		if host.nextResultCalls != 1 {
			t.Fatalf("round %d: next_result called %d times in all, want 1", round, host.nextResultCalls)
		}
	}
	// A decoded answer does not alias the reused buffer.
	first, _ := g.callNext(host, NewContext())
	host.chain = func(c *Context) (*Context, error) { c.Response().SetBody(strings.Repeat("y", len(big))); return c, nil }
	if _, err := g.callNext(host, NewContext()); err != nil {
		t.Fatal(err)
	}
	if string(first.Response().Body()) != big {
		t.Fatal("an earlier answer changed with the buffer")
	}
}

func TestCallNextReportsTheChainsError(t *testing.T) {
	g := running()
	host := &fakeHost{chain: func(*Context) (*Context, error) { return nil, errors.New("downstream failed") }}
	got, err := g.callNext(host, NewContext())
	var chainErr *ChainError
	if got != nil || !errors.As(err, &chainErr) || err.Error() != "downstream failed" {
		t.Fatalf("got %v, %v", got, err)
	}
}

func TestCallNextRefusesAnswersOutsideTheABI(t *testing.T) {
	cases := []struct {
		name string
		host nextHost
	}{
		{"longer than the buffer", fixedHost{answer: minNextBuffer + 1}},
		{"next_result disagrees", fixedHost{answer: -100, kept: 99}},
		{"next_result with nothing kept", fixedHost{answer: -100, kept: 0}},
		{"not a run result", fixedHost{answer: 2, write: []byte{0x08, 0x01}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := running().callNext(tc.host, NewContext())
			var protocolErr *ProtocolError
			if !errors.As(err, &protocolErr) {
				t.Fatalf("got %v", err)
			}
		})
	}
}

func TestCallNextOutsideARun(t *testing.T) {
	host := &fakeHost{chain: func(c *Context) (*Context, error) { return c, nil }}
	if _, err := (&guestState{}).callNext(host, NewContext()); !errors.Is(err, ErrNotInRun) {
		t.Fatalf("got %v", err)
	}
	if host.nextCalls != 0 {
		t.Fatal("the host was called")
	}
}

func TestResizeKeepsTheBufferWhileItIsLargeEnough(t *testing.T) {
	var g guestState
	first := g.resizeInput(100)
	if len(first) != 100 {
		t.Fatalf("len %d", len(first))
	}
	if again := g.resizeInput(50); &again[0] != &first[0] {
		t.Fatal("a smaller size moved the buffer")
	}
	if again := g.resizeInput(100); &again[0] != &first[0] {
		t.Fatal("the same size moved the buffer")
	}
	if bigger := g.resizeInput(1000); len(bigger) != 1000 {
		t.Fatalf("len %d", len(bigger))
	}
}

// runOn writes input into g's input buffer as the host does and runs.
func runOn(g *guestState, input []byte, report func(string)) *RunResult {
	copy(g.resizeInput(uint32(len(input))), input)
	out := g.run(uint32(len(input)), report)
	result, err := DecodeRunResult(out)
	if err != nil {
		panic(err)
	}
	return result
}

func noPanic(message string) { panic("unexpected panic report: " + message) }

func TestRunAnswersWithTheFunctionsContext(t *testing.T) {
	g := &guestState{fn: func(c *Context) (*Context, error) {
		c.Response().SetBody("Hello, " + c.Request().Headers().First("x-name"))
		return c, nil
	}}
	ctx := NewContext()
	ctx.Request().Headers().Set("X-Name", []string{"World"})
	result := runOn(g, ctx.Encode(nil), noPanic)
	if result.Failed || string(result.Context.Response().Body()) != "Hello, World" {
		t.Fatalf("%+v", result)
	}
	if g.running {
		t.Fatal("still running after the run")
	}
	// The host writes a shorter context over a longer one: run sees len bytes only.
	short := NewContext().Encode(nil)
	long := allFields().Encode(nil)
	copy(g.resizeInput(uint32(len(long))), long)
	copy(g.input, short)
	out := g.run(uint32(len(short)), noPanic)
	if r, err := DecodeRunResult(out); err != nil || r.Failed || r.Context.Request().Method() != "GET" {
		t.Fatalf("%+v, %v", r, err)
	}
}

func TestRunWithNilContextAnswersWithTheGivenOne(t *testing.T) {
	g := &guestState{fn: func(c *Context) (*Context, error) {
		c.Response().SetBody("changed in place")
		return nil, nil
	}}
	result := runOn(g, NewContext().Encode(nil), noPanic)
	if result.Failed || string(result.Context.Response().Body()) != "changed in place" {
		t.Fatalf("%+v", result)
	}
}

func TestRunAnswersWithTheFunctionsError(t *testing.T) {
	g := &guestState{fn: func(c *Context) (*Context, error) { return c, errors.New("guest error") }}
	result := runOn(g, NewContext().Encode(nil), noPanic)
	if !result.Failed || result.Message != "guest error" {
		t.Fatalf("%+v", result)
	}
}

func TestRunPassesTheChainsErrorOn(t *testing.T) {
	g := &guestState{}
	host := &fakeHost{chain: func(*Context) (*Context, error) { return nil, errors.New("deeper error") }}
	g.fn = func(c *Context) (*Context, error) { return g.callNext(host, c) }
	result := runOn(g, NewContext().Encode(nil), noPanic)
	if !result.Failed || result.Message != "deeper error" {
		t.Fatalf("%+v", result)
	}
}

func TestARequestNeverAskedForIsHandedOnAsItCame(t *testing.T) {
	g := &guestState{fn: func(c *Context) (*Context, error) {
		c.Response().SetBody("answered")
		return c, nil
	}}
	sent := allFields()
	input := sent.Encode(nil)
	out := runOn(g, input, noPanic)
	if out.Failed {
		t.Fatalf("%+v", out)
	}
	want := allFields()
	want.Response().SetBody("answered")
	if d := diffContexts(out.Context, want); d != "" {
		t.Fatalf("differs in %s", d)
	}
	// The request's bytes are the ones sent.
	sentRequest, _, ok := splitContext(input)
	gotRequest, _, ok2 := splitContext(out.Context.Encode(nil))
	if !ok || !ok2 || string(sentRequest) != string(gotRequest) {
		t.Fatalf("request bytes changed: %x, then %x", sentRequest, gotRequest)
	}
}

func TestTheRequestIsDecodedWhenAskedFor(t *testing.T) {
	g := &guestState{fn: func(c *Context) (*Context, error) {
		c.Response().SetBody(c.Request().URI())
		c.Request().SetMethod("PUT")
		return c, nil
	}}
	// Twice, so that the second run's input overwrites the first one's.
	for range 2 {
		out := runOn(g, allFields().Encode(nil), noPanic)
		if out.Failed || string(out.Context.Response().Body()) != "/api/v1/items?limit=10" ||
			out.Context.Request().Method() != "PUT" || out.Context.Request().IP() != "192.0.2.17" {
			t.Fatalf("%+v", out)
		}
	}
}

func TestARequestThatDoesNotDecodeFailsTheRunOnceAskedFor(t *testing.T) {
	// A well-formed context whose request holds a method field cut short.
	response := NewContext().Encode(nil)[2:] // the empty response field
	input := append([]byte{0x0a, 0x02, 0x0a, 0x05}, response...)
	if _, _, ok := splitContext(input); !ok {
		t.Fatal("the input does not split")
	}
	// A function that never asks answers with the context as it came (the
	// host, which sent it, is the one to judge those bytes).
	untouched := &guestState{fn: func(c *Context) (*Context, error) { return c, nil }}
	copy(untouched.resizeInput(uint32(len(input))), input)
	if out := untouched.run(uint32(len(input)), noPanic); string(out) != string(append([]byte{0x0a, byte(len(input))}, input...)) {
		t.Fatalf("answered %x to %x", out, input)
	}
	for _, fn := range []Function{
		func(c *Context) (*Context, error) { c.Request(); return c, nil },
		func(c *Context) (*Context, error) { c.Request(); return nil, errors.New("its own error") },
		func(c *Context) (*Context, error) { c.Request(); return c.Next() },
	} {
		g := &guestState{fn: fn}
		out := runOn(g, input, noPanic)
		if !out.Failed || !strings.Contains(out.Message, "cannot decode") {
			t.Fatalf("%+v", out)
		}
	}
}

func TestRunWithABadContextOrNoFunction(t *testing.T) {
	g := &guestState{fn: func(c *Context) (*Context, error) { return c, nil }}
	if result := runOn(g, []byte{0xff}, noPanic); !result.Failed || !strings.Contains(result.Message, "malformed") {
		t.Fatalf("%+v", result)
	}
	g.fn = nil
	if result := runOn(g, NewContext().Encode(nil), noPanic); !result.Failed || !strings.Contains(result.Message, "Register") {
		t.Fatalf("%+v", result)
	}
}

func TestRunReportsAPanicAndPanicsOn(t *testing.T) {
	cases := []struct {
		value any
		want  string
	}{
		{"guest panic", "guest panic"},
		{errors.New("an error"), "an error"},
		{stringer{}, "a stringer"},
		{42, "42"},
		{struct{}{}, "panic with a value of a type the guest cannot print"},
	}
	for _, tc := range cases {
		g := &guestState{fn: func(*Context) (*Context, error) { panic(tc.value) }}
		var reported []string
		func() {
			defer func() {
				if r := recover(); r == nil {
					t.Fatal("the panic did not go on")
				}
			}()
			runOn(g, NewContext().Encode(nil), func(m string) { reported = append(reported, m) })
		}()
		if len(reported) != 1 || reported[0] != tc.want {
			t.Fatalf("reported %q, want %q", reported, tc.want)
		}
	}
	// A runtime error is an error too.
	var reported string
	g := &guestState{fn: func(*Context) (*Context, error) {
		var m map[string]int
		m["x"] = 1
		return nil, nil
	}}
	func() {
		defer func() { _ = recover() }()
		runOn(g, NewContext().Encode(nil), func(m string) { reported = m })
	}()
	if !strings.Contains(reported, "nil map") {
		t.Fatalf("reported %q", reported)
	}
}

type stringer struct{}

func (stringer) String() string { return "a stringer" }

func TestRegister(t *testing.T) {
	saved := guest.fn
	defer func() { guest.fn = saved }()
	Register(func(c *Context) (*Context, error) { return nil, errors.New("registered") })
	if _, err := guest.fn(NewContext()); err == nil || err.Error() != "registered" {
		t.Fatalf("got %v", err)
	}
}

func TestCallNextKeepsTheContextWhenTheHostHandsItBackUnchanged(t *testing.T) {
	g := running()
	host := &fakeHost{unchanged: true}
	ctx := NewContext()
	ctx.Response().SetBody("hello")
	ctx.Request().Headers().Set("x-a", []string{"1", "2"})
	got, err := g.callNext(host, ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got != ctx || host.nextCalls != 1 || host.nextResultCalls != 0 {
		t.Fatal("an unchanged answer should give back the same context, without asking for a result")
	}
}
