package signature

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The shared vectors in ../testdata/vectors, built here exactly as
// tests/it/vectors.rs builds them.

const vectorsDir = "../testdata/vectors"

// patternedBody is n bytes, byte i being i % 251.
func patternedBody(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

func allFields() *Context {
	ctx := NewContext()
	req := ctx.Request()
	req.SetMethod("POST")
	req.SetURI("/api/v1/items?limit=10")
	req.SetBody(`{"name":"scale"}`)
	req.SetProtocol("HTTP/2")
	req.SetIP("192.0.2.17")
	req.Headers().Set("content-type", []string{"application/json"})
	req.Headers().Set("x-request-id", []string{"abc-123"})
	resp := ctx.Response()
	if err := resp.SetStatusCode(201); err != nil {
		panic(err)
	}
	resp.SetBody("created")
	resp.Headers().Set("location", []string{"/api/v1/items/42"})
	return ctx
}

func unicodeHeaders() *Context {
	ctx := NewContext()
	ctx.Request().Headers().Set("x-greeting", []string{"héllo wörld", "こんにちは", "🦀"})
	ctx.Response().Headers().Set("x-émoji", []string{"✓"})
	return ctx
}

func multiValuedHeaders() *Context {
	ctx := NewContext()
	ctx.Request().Headers().Set("accept", []string{"text/html", "application/json", ""})
	ctx.Request().Headers().Set("cookie", []string{"a=1", "b=2"})
	ctx.Response().Headers().Set("set-cookie", []string{"a=1; Path=/", "b=2; HttpOnly"})
	ctx.Response().Headers().Set("empty", nil)
	return ctx
}

func largeBody() *Context {
	ctx := NewContext()
	ctx.Request().SetBodyBytes(patternedBody(1 << 20))
	ctx.Response().SetBodyBytes(patternedBody(1 << 20))
	return ctx
}

func nonDefaultEmpty() *Context {
	ctx := NewContext()
	ctx.Request().SetMethod("")
	ctx.Request().SetProtocol("")
	ctx.response.status = 0 // below what SetStatusCode accepts, as the Rust test sets the field
	return ctx
}

func rawHeaderNames() *Context {
	ctx := NewContext()
	ctx.Request().Headers().SetRaw("X-Mixed-Case", []string{"kept"})
	return ctx
}

type vector struct {
	name   string
	ctx    *Context   // a context vector
	result *RunResult // or a result vector
}

func (v vector) encode() []byte {
	if v.ctx != nil {
		return v.ctx.Encode(nil)
	}
	return v.result.Encode(nil)
}

func vectors() []vector {
	return []vector{
		{name: "empty_context", ctx: NewContext()},
		{name: "all_fields", ctx: allFields()},
		{name: "unicode_headers", ctx: unicodeHeaders()},
		{name: "multi_valued_headers", ctx: multiValuedHeaders()},
		{name: "large_body", ctx: largeBody()},
		{name: "non_default_empty", ctx: nonDefaultEmpty()},
		{name: "raw_header_names", ctx: rawHeaderNames()},
		{name: "result_context", result: &RunResult{Context: allFields()}},
		{name: "result_error", result: &RunResult{Failed: true, Message: "guest error: ünïcode ✗"}},
		{name: "result_empty_error", result: &RunResult{Failed: true, Message: ""}},
	}
}

// manifestNames lists the vectors of manifest.txt, in order.
func manifestNames(t *testing.T) []string {
	t.Helper()
	text, err := os.ReadFile(filepath.Join(vectorsDir, "manifest.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(string(text), "\n") {
		if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
			continue
		}
		names = append(names, strings.Fields(line)[0])
	}
	return names
}

// diffContexts describes how a and b differ, or returns "" when they are
// equal (nil and empty bodies and value lists counting as equal).
func diffContexts(a, b *Context) string {
	var d []string
	check := func(what string, equal bool) {
		if !equal {
			d = append(d, what)
		}
	}
	ra, rb := a.Request(), b.Request()
	check("request.method", ra.method == rb.method)
	check("request.uri", ra.uri == rb.uri)
	check("request.content_length", ra.contentLength == rb.contentLength)
	check("request.protocol", ra.protocol == rb.protocol)
	check("request.ip", ra.ip == rb.ip)
	check("request.body", bytes.Equal(ra.body, rb.body))
	check("request.headers", headersEqual(&ra.headers, &rb.headers))
	check("response.status_code", a.response.status == b.response.status)
	check("response.body", bytes.Equal(a.response.body, b.response.body))
	check("response.headers", headersEqual(&a.response.headers, &b.response.headers))
	return strings.Join(d, ", ")
}

func headersEqual(a, b *Headers) bool {
	return slices.EqualFunc(a.entries, b.entries, func(x, y headerEntry) bool {
		return x.name == y.name && slices.Equal(x.values, y.values)
	})
}

func diffResults(a, b *RunResult) string {
	switch {
	case a.Failed != b.Failed:
		return "one failed, the other did not"
	case a.Failed && a.Message != b.Message:
		return "messages " + a.Message + " and " + b.Message
	case a.Failed:
		return ""
	default:
		return diffContexts(a.Context, b.Context)
	}
}

func TestVectorsMatchTheManifest(t *testing.T) {
	var names []string
	for _, v := range vectors() {
		names = append(names, v.name)
	}
	if listed := manifestNames(t); !slices.Equal(listed, names) {
		t.Fatalf("manifest.txt lists %q, this test builds %q (same names, same order)", listed, names)
	}
}

func TestVectorsMatchByteForByte(t *testing.T) {
	for _, v := range vectors() {
		t.Run(v.name, func(t *testing.T) {
			onDisk, err := os.ReadFile(filepath.Join(vectorsDir, v.name+".bin"))
			if err != nil {
				t.Fatal(err)
			}
			encoded := v.encode()
			if !bytes.Equal(encoded, onDisk) {
				at := 0
				for at < len(encoded) && at < len(onDisk) && encoded[at] == onDisk[at] {
					at++
				}
				t.Fatalf("encoding differs from the file at byte %d (lengths %d and %d)", at, len(encoded), len(onDisk))
			}
			if v.ctx != nil {
				if got := v.ctx.EncodedLen(); got != len(encoded) {
					t.Errorf("EncodedLen() = %d, encoding has %d bytes", got, len(encoded))
				}
				decoded, err := DecodeContext(onDisk)
				if err != nil {
					t.Fatal(err)
				}
				if d := diffContexts(decoded, v.ctx); d != "" {
					t.Fatalf("decoded context differs: %s", d)
				}
			} else {
				decoded, err := DecodeRunResult(onDisk)
				if err != nil {
					t.Fatal(err)
				}
				if d := diffResults(decoded, v.result); d != "" {
					t.Fatalf("decoded result differs: %s", d)
				}
			}
		})
	}
}

func TestEncodeAppends(t *testing.T) {
	prefix := []byte("prefix")
	got := NewContext().Encode(slices.Clone(prefix))
	want := append(slices.Clone(prefix), 0x0a, 0x00, 0x12, 0x00)
	if !bytes.Equal(got, want) {
		t.Fatalf("got % x, want % x", got, want)
	}
	got = EncodeErrorResult(slices.Clone(prefix), "boom")
	want = append(slices.Clone(prefix), 0x12, 0x04, 'b', 'o', 'o', 'm')
	if !bytes.Equal(got, want) {
		t.Fatalf("got % x, want % x", got, want)
	}
}

// fieldBoundaries returns where the top-level fields of a valid encoding end.
func fieldBoundaries(t *testing.T, b []byte) map[int]bool {
	ends := map[int]bool{}
	pos := 0
	for pos < len(b) {
		_, _, n, err := readKey(b[pos:])
		if err != nil {
			t.Fatal(err)
		}
		pos += n
		_, n, err = readDelimited(b[pos:])
		if err != nil {
			t.Fatal(err)
		}
		pos += n
		ends[pos] = true
	}
	return ends
}

func TestTruncatedVectorsAreRefused(t *testing.T) {
	for _, v := range vectors() {
		encoded := v.encode()
		// Every vector is a sequence of length-delimited top-level fields, so
		// a cut anywhere but between two of them leaves a field running past
		// the end. Try every cut of the small vectors, a few of the large one.
		ends := fieldBoundaries(t, encoded)
		var cuts []int
		if len(encoded) < 4096 {
			for cut := 1; cut < len(encoded); cut++ {
				cuts = append(cuts, cut)
			}
		} else {
			cuts = []int{1, len(encoded) / 4, len(encoded) / 2, len(encoded) - 1}
		}
		cuts = slices.DeleteFunc(cuts, func(cut int) bool { return ends[cut] })
		if len(cuts) == 0 {
			t.Fatalf("%s: no cut to try", v.name)
		}
		for _, cut := range cuts {
			var err error
			if v.ctx != nil {
				_, err = DecodeContext(encoded[:cut])
			} else {
				_, err = DecodeRunResult(encoded[:cut])
			}
			var decodeErr *DecodeError
			if !errors.As(err, &decodeErr) || !strings.Contains(err.Error(), "malformed") {
				t.Errorf("%s cut at %d: got %v, want a malformed-message error", v.name, cut, err)
			}
		}
	}
}

func TestDecodeAcceptsAnyValidEncoding(t *testing.T) {
	cases := []struct {
		name  string
		input []byte
		check func(*Context) bool
	}{
		{"empty input is the default context", nil, func(c *Context) bool {
			return diffContexts(c, NewContext()) == ""
		}},
		{"fields out of order", []byte{0x12, 0x03, 0x08, 0xc9, 0x01, 0x0a, 0x02, 0x2a, 0x00}, func(c *Context) bool {
			return c.Response().StatusCode() == 201 && c.Request().IP() == ""
		}},
		{"last scalar wins", []byte{0x0a, 0x0a, 0x0a, 0x03, 'P', 'U', 'T', 0x0a, 0x03, 'G', 'E', 'T'}, func(c *Context) bool {
			return c.Request().Method() == "GET"
		}},
		{"repeated request merges", []byte{0x0a, 0x05, 0x0a, 0x03, 'P', 'U', 'T', 0x0a, 0x02, 0x18, 0x05}, func(c *Context) bool {
			return c.Request().Method() == "PUT" && c.Request().ContentLength() == 5
		}},
		{"unknown fields of every wire type are skipped", []byte{
			0x0a, 0x15,
			0x78, 0x96, 0x01, // 15: varint
			0x79, 1, 2, 3, 4, 5, 6, 7, 8, // 15: fixed64
			0x7d, 1, 2, 3, 4, // 15: fixed32
			0x7a, 0x02, 0xff, 0xfe, // 15: bytes (not UTF-8, but unknown)
			0x12, 0x00,
		}, func(c *Context) bool { return diffContexts(c, NewContext()) == "" }},
		{"groups are skipped", []byte{0x0a, 0x06, 0x7b, 0x08, 0x01, 0x0b, 0x0c, 0x7c}, func(c *Context) bool {
			return diffContexts(c, NewContext()) == ""
		}},
		{"a repeated header entry replaces the earlier one", []byte{
			0x0a, 0x14,
			0x3a, 0x08, 0x0a, 0x01, 'a', 0x12, 0x03, 0x0a, 0x01, '1',
			0x3a, 0x08, 0x0a, 0x01, 'a', 0x12, 0x03, 0x0a, 0x01, '2',
		}, func(c *Context) bool { return slices.Equal(c.Request().Headers().Get("a"), []string{"2"}) }},
		{"a repeated values message merges", []byte{
			0x0a, 0x0e,
			0x3a, 0x0c, 0x0a, 0x01, 'a', 0x12, 0x02, 0x0a, 0x00, 0x12, 0x03, 0x0a, 0x01, '2',
		}, func(c *Context) bool { return slices.Equal(c.Request().Headers().Get("a"), []string{"", "2"}) }},
		{"an entry with no name or values", []byte{0x12, 0x02, 0x1a, 0x00}, func(c *Context) bool {
			h := c.Response().Headers()
			return h.Has("") && len(h.Get("")) == 0
		}},
		{"status 65535 is kept", []byte{0x12, 0x04, 0x08, 0xff, 0xff, 0x03}, func(c *Context) bool {
			return c.Response().StatusCode() == 65535
		}},
		{"status keeps the low 32 bits of a longer varint", []byte{0x12, 0x06, 0x08, 0xc8, 0x81, 0x80, 0x80, 0x10}, func(c *Context) bool {
			return c.Response().StatusCode() == 200
		}},
		{"overlong varints", []byte{0x0a, 0x04, 0x18, 0x85, 0x80, 0x00}, func(c *Context) bool {
			return c.Request().ContentLength() == 5
		}},
		{"content length of 2^64-1", []byte{0x0a, 0x0b, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, func(c *Context) bool {
			return c.Request().ContentLength() == 1<<64-1
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := DecodeContext(tc.input)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(c) {
				t.Fatalf("unexpected context %+v", c)
			}
		})
	}
}

func TestDecodeRefusesInvalidEncodings(t *testing.T) {
	cases := []struct {
		name  string
		input []byte
	}{
		{"status above 16 bits", []byte{0x12, 0x04, 0x08, 0xf0, 0xa2, 0x04}},
		{"invalid UTF-8 in a string", []byte{0x0a, 0x03, 0x12, 0x01, 0xff}},
		{"UTF-8 surrogate", []byte{0x0a, 0x05, 0x12, 0x03, 0xed, 0xa0, 0x80}},
		{"invalid UTF-8 in a header value", []byte{0x0a, 0x09, 0x3a, 0x07, 0x0a, 0x00, 0x12, 0x03, 0x0a, 0x01, 0xc0}},
		{"wrong wire type for a string", []byte{0x0a, 0x02, 0x08, 0x01}},
		{"wrong wire type for a varint", []byte{0x0a, 0x02, 0x1a, 0x00}},
		{"wrong wire type for a message", []byte{0x08, 0x01}},
		{"tag 0", []byte{0x00, 0x00}},
		{"wire type 6", []byte{0x0e}},
		{"wire type 7", []byte{0x0f}},
		{"key above 32 bits", []byte{0x80, 0x80, 0x80, 0x80, 0x10}},
		{"varint of 11 bytes", []byte{0x0a, 0x0c, 0x18, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}},
		{"varint above 64 bits", []byte{0x0a, 0x0b, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}},
		{"end group without start", []byte{0x7c}},
		{"group closed by another tag", []byte{0x7b, 0x84, 0x01}},
		{"unterminated group", []byte{0x7b, 0x08, 0x01}},
		{"length past the end", []byte{0x0a, 0x05, 0x00}},
		{"fixed64 past the end", []byte{0x79, 1, 2, 3}},
		{"fixed32 past the end", []byte{0x7d, 1, 2, 3}},
		{"inner field past the message", []byte{0x0a, 0x02, 0x12, 0x02, 0x12, 0x00}},
		{"groups nested past the recursion limit", nestedGroups(101)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := DecodeContext(tc.input)
			if err == nil {
				t.Fatalf("decoded %+v, want an error", c)
			}
			if !strings.HasPrefix(err.Error(), "malformed http signature message: ") {
				t.Fatalf("error %q", err)
			}
		})
	}
}

// nestedGroups is depth unknown groups, one inside the other.
func nestedGroups(depth int) []byte {
	var b []byte
	for range depth {
		b = append(b, 0x7b) // field 15, start group
	}
	for range depth {
		b = append(b, 0x7c) // field 15, end group
	}
	return b
}

func TestRecursionLimitMatchesProst(t *testing.T) {
	// prost checks its limit (100) on entering each message and each unknown
	// field: at the top level of a context, an empty group may nest 100
	// deep, 101 is refused.
	if _, err := DecodeContext(nestedGroups(100)); err != nil {
		t.Fatalf("100 nested groups: %v", err)
	}
	if _, err := DecodeContext(nestedGroups(101)); err == nil {
		t.Fatal("101 nested groups were accepted")
	}
	// In a run result everything is one level deeper.
	ok := append([]byte{0x0a, 0xc6, 0x01}, nestedGroups(99)...) // 198 bytes
	if _, err := DecodeRunResult(ok); err != nil {
		t.Fatalf("99 nested groups in a result's context: %v", err)
	}
	tooDeep := append([]byte{0x0a, 0xc8, 0x01}, nestedGroups(100)...) // 200 bytes
	if _, err := DecodeRunResult(tooDeep); err == nil {
		t.Fatal("100 nested groups in a result's context were accepted")
	}
}

func TestHeaderMapsPastTheLimitAreRefused(t *testing.T) {
	// As the Rust codec counts them: one item for each entry's name and one
	// per value, in the request's and the response's maps apart.
	withValues := func(request, response int) []byte {
		ctx := NewContext()
		ctx.Request().Headers().Set("a", make([]string, request))
		ctx.Response().Headers().Set("b", make([]string, response))
		return ctx.Encode(nil)
	}
	if _, err := DecodeContext(withValues(maxHeaderItems-1, maxHeaderItems-1)); err != nil {
		t.Fatalf("%d items in each map: %v", maxHeaderItems, err)
	}
	for _, b := range [][]byte{withValues(maxHeaderItems, 0), withValues(0, maxHeaderItems)} {
		_, err := DecodeContext(b)
		if err == nil || !strings.Contains(err.Error(), "more header names and values than a header map may hold") {
			t.Fatalf("%d items in one map: %v", maxHeaderItems+1, err)
		}
	}
}

func TestRunResults(t *testing.T) {
	ctxResult := EncodeContextResult(nil, allFields())
	errResult := EncodeErrorResult(nil, "boom")

	if _, err := DecodeRunResult(nil); err == nil || err.Error() != "malformed run result: it holds neither a context nor an error" {
		t.Fatalf("empty result: %v", err)
	}
	if _, err := DecodeRunResult([]byte{0x18, 0x01}); err == nil {
		t.Fatal("a result with only an unknown field was accepted")
	}
	if _, err := DecodeRunResult([]byte{0x10, 0x01}); err == nil {
		t.Fatal("an error field with the varint wire type was accepted")
	}

	// An error after a context replaces it; a context after an error starts afresh.
	r, err := DecodeRunResult(slices.Concat(ctxResult, errResult))
	if err != nil || !r.Failed || r.Message != "boom" {
		t.Fatalf("context then error: %+v, %v", r, err)
	}
	r, err = DecodeRunResult(slices.Concat(errResult, []byte{0x0a, 0x02, 0x12, 0x00}))
	if err != nil || r.Failed || diffContexts(r.Context, NewContext()) != "" {
		t.Fatalf("error then default context: %+v, %v", r, err)
	}
	// Two contexts merge.
	r, err = DecodeRunResult(slices.Concat(ctxResult, []byte{0x0a, 0x04, 0x12, 0x02, 0x08, 0x00}))
	if err != nil || r.Failed {
		t.Fatalf("two contexts: %+v, %v", r, err)
	}
	want := allFields()
	want.response.status = 0
	if d := diffContexts(r.Context, want); d != "" {
		t.Fatalf("merged contexts differ in %s", d)
	}
	// A nil context encodes as the default one.
	if got := (&RunResult{}).Encode(nil); !bytes.Equal(got, []byte{0x0a, 0x04, 0x0a, 0x00, 0x12, 0x00}) {
		t.Fatalf("nil context result: % x", got)
	}
}

func TestNonDefaultEmptyStringsAreWritten(t *testing.T) {
	ctx := NewContext()
	ctx.Request().SetMethod("")
	got := ctx.Encode(nil)
	if want := []byte{0x0a, 0x02, 0x0a, 0x00, 0x12, 0x00}; !bytes.Equal(got, want) {
		t.Fatalf("got % x, want % x", got, want)
	}
	back, err := DecodeContext(got)
	if err != nil || back.Request().Method() != "" {
		t.Fatalf("decoded %+v, %v", back, err)
	}
}

func TestInvalidUTF8IsReplacedWhenEncoding(t *testing.T) {
	ctx := NewContext()
	ctx.Request().SetURI("/a\xffb")
	ctx.Request().Headers().Set("x-bad", []string{"\xc0"})
	ctx.Request().Headers().Set("x-\xfe", []string{"v"})
	encoded := ctx.Encode(nil)
	if len(encoded) != ctx.EncodedLen() {
		t.Fatalf("EncodedLen() = %d, encoding has %d bytes", ctx.EncodedLen(), len(encoded))
	}
	back, err := DecodeContext(encoded)
	if err != nil {
		t.Fatal(err)
	}
	if back.Request().URI() != "/a\uFFFDb" || back.Request().Headers().First("x-bad") != "\uFFFD" ||
		back.Request().Headers().First("x-\uFFFD") != "v" {
		t.Fatalf("decoded %+v", back.Request())
	}
	result := EncodeErrorResult(nil, "bad \xff message")
	r, err := DecodeRunResult(result)
	if err != nil || r.Message != "bad \uFFFD message" {
		t.Fatalf("%+v, %v", r, err)
	}
}

func TestDecodedBodiesDoNotAliasTheInput(t *testing.T) {
	encoded := allFields().Encode(nil)
	ctx, err := DecodeContext(encoded)
	if err != nil {
		t.Fatal(err)
	}
	for i := range encoded {
		encoded[i] = 0
	}
	if string(ctx.Request().Body()) != `{"name":"scale"}` || string(ctx.Response().Body()) != "created" {
		t.Fatal("a body changed with the input buffer")
	}
}

func FuzzDecode(f *testing.F) {
	for _, v := range vectors() {
		f.Add(v.encode())
	}
	f.Add([]byte{})
	f.Add(nestedGroups(3))
	f.Fuzz(func(t *testing.T, data []byte) {
		if ctx, err := DecodeContext(data); err == nil {
			once := ctx.Encode(nil)
			if len(once) != ctx.EncodedLen() {
				t.Fatalf("EncodedLen() = %d, encoding has %d bytes", ctx.EncodedLen(), len(once))
			}
			again, err := DecodeContext(once)
			if err != nil {
				t.Fatalf("re-decoding the encoding of a decoded context: %v", err)
			}
			if d := diffContexts(ctx, again); d != "" {
				t.Fatalf("decode, encode, decode changed %s", d)
			}
			if twice := again.Encode(nil); !bytes.Equal(once, twice) {
				t.Fatal("the encoding is not stable")
			}
		}
		if r, err := DecodeRunResult(data); err == nil {
			once := r.Encode(nil)
			again, err := DecodeRunResult(once)
			if err != nil {
				t.Fatalf("re-decoding the encoding of a decoded result: %v", err)
			}
			if d := diffResults(r, again); d != "" {
				t.Fatalf("decode, encode, decode changed %s", d)
			}
			if twice := again.Encode(nil); !bytes.Equal(once, twice) {
				t.Fatal("the encoding is not stable")
			}
		}
	})
}
