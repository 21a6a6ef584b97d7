package signature

import (
	"errors"
	"slices"
	"testing"
)

func TestNewContextHasTheDefaults(t *testing.T) {
	ctx := NewContext()
	req, resp := ctx.Request(), ctx.Response()
	if req.Method() != "GET" || req.Protocol() != "HTTP/1.1" || req.URI() != "" || req.IP() != "" ||
		req.ContentLength() != 0 || len(req.Body()) != 0 || req.Headers().Len() != 0 {
		t.Fatalf("request %+v", req)
	}
	if resp.StatusCode() != 200 || len(resp.Body()) != 0 || resp.Headers().Len() != 0 {
		t.Fatalf("response %+v", resp)
	}
}

func TestRequestAccessors(t *testing.T) {
	req := NewContext().Request()
	req.SetMethod("DELETE")
	req.SetURI("/x?y=1")
	req.SetProtocol("HTTP/2")
	req.SetIP("2001:db8::1")
	if req.Method() != "DELETE" || req.URI() != "/x?y=1" || req.Protocol() != "HTTP/2" || req.IP() != "2001:db8::1" {
		t.Fatalf("request %+v", req)
	}
	req.SetBody("hello")
	if string(req.Body()) != "hello" || req.ContentLength() != 5 {
		t.Fatalf("SetBody: body %q, content length %d", req.Body(), req.ContentLength())
	}
	req.SetBodyBytes([]byte{1, 2, 3})
	if len(req.Body()) != 3 || req.ContentLength() != 3 {
		t.Fatalf("SetBodyBytes: body %v, content length %d", req.Body(), req.ContentLength())
	}
	req.SetBodyBytes(nil)
	if req.Body() != nil || req.ContentLength() != 0 {
		t.Fatalf("SetBodyBytes(nil): body %v, content length %d", req.Body(), req.ContentLength())
	}
	req.SetContentLength(42)
	if req.ContentLength() != 42 {
		t.Fatal("SetContentLength")
	}
}

func TestResponseAccessors(t *testing.T) {
	resp := NewContext().Response()
	resp.SetBody("created")
	if string(resp.Body()) != "created" {
		t.Fatal("SetBody")
	}
	resp.SetBodyBytes([]byte("raw"))
	if string(resp.Body()) != "raw" {
		t.Fatal("SetBodyBytes")
	}
	for _, code := range []int{100, 201, 404, 599} {
		if err := resp.SetStatusCode(code); err != nil || resp.StatusCode() != code {
			t.Fatalf("SetStatusCode(%d): %v, status %d", code, err, resp.StatusCode())
		}
	}
	if err := resp.SetStatusCode(204); err != nil {
		t.Fatal(err)
	}
	for _, code := range []int{-1, 0, 99, 600, 65535, 1 << 20} {
		err := resp.SetStatusCode(code)
		var invalid *InvalidStatusCodeError
		if !errors.As(err, &invalid) || invalid.Code != code {
			t.Fatalf("SetStatusCode(%d): %v", code, err)
		}
		if resp.StatusCode() != 204 {
			t.Fatalf("SetStatusCode(%d) changed the status to %d", code, resp.StatusCode())
		}
	}
	if got := resp.SetStatusCode(600).Error(); got != "invalid status code 600: must be within 100-599" {
		t.Fatalf("message %q", got)
	}
}

func TestHeaders(t *testing.T) {
	var h Headers
	if h.Get("x") != nil || h.Has("x") || h.Len() != 0 || h.First("x") != "" {
		t.Fatal("zero Headers is not empty")
	}
	values := []string{"text/html"}
	h.Set("Content-Type", values)
	values[0] = "changed"
	if got := h.Get("content-type"); !slices.Equal(got, []string{"text/html"}) {
		t.Fatalf("Get(content-type) = %q (Set must copy and lower-case)", got)
	}
	if got := h.Get("CONTENT-TYPE"); !slices.Equal(got, []string{"text/html"}) {
		t.Fatalf("Get(CONTENT-TYPE) = %q", got)
	}
	h.Append("X-Multi", "a")
	h.Append("x-multi", "b")
	if got := h.Get("x-multi"); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("Append: %q", got)
	}
	h.Set("Accept", nil)
	if !h.Has("accept") || h.Get("accept") == nil || len(h.Get("accept")) != 0 {
		t.Fatalf("a header with no values: %q", h.Get("accept"))
	}
	if got := h.Names(); !slices.Equal(got, []string{"accept", "content-type", "x-multi"}) {
		t.Fatalf("Names() = %q", got)
	}
	var seen []string
	for name, values := range h.All() {
		seen = append(seen, name)
		if name == "x-multi" && len(values) != 2 {
			t.Fatalf("All: %s = %q", name, values)
		}
	}
	if !slices.Equal(seen, h.Names()) {
		t.Fatalf("All() visited %q", seen)
	}
	for range h.All() {
		break // stopping early must not panic
	}
	if got := h.Delete("X-MULTI"); !slices.Equal(got, []string{"a", "b"}) || h.Has("x-multi") {
		t.Fatalf("Delete returned %q", got)
	}
	if h.Delete("missing") != nil {
		t.Fatal("Delete of a missing header")
	}
	h.Clear()
	if h.Len() != 0 {
		t.Fatal("Clear")
	}
}

func TestHeaderNamesAreLowerCasedASCIIOnly(t *testing.T) {
	var h Headers
	h.Set("X-ÉMOJI", []string{"✓"})
	if got := h.Names(); !slices.Equal(got, []string{"x-Émoji"}) {
		t.Fatalf("Names() = %q, want the non-ASCII letter kept", got)
	}
}

func TestRawHeaderNames(t *testing.T) {
	var h Headers
	h.SetRaw("X-Mixed-Case", []string{"kept"})
	h.Set("x-mixed-case", []string{"lower"})
	if got := h.Names(); !slices.Equal(got, []string{"X-Mixed-Case", "x-mixed-case"}) {
		t.Fatalf("Names() = %q", got)
	}
	// Exact names first, then lower-cased.
	if h.First("X-Mixed-Case") != "kept" || h.First("x-mixed-case") != "lower" || h.First("X-MIXED-CASE") != "lower" {
		t.Fatal("lookups")
	}
	h.Delete("X-Mixed-Case")
	if got := h.Names(); !slices.Equal(got, []string{"x-mixed-case"}) {
		t.Fatalf("Names() after Delete = %q", got)
	}
}

func TestHeadersStaySortedByBytes(t *testing.T) {
	var h Headers
	for _, name := range []string{"z", "a", "m", "é", "b", "a-b", "a"} {
		h.Append(name, name)
	}
	want := []string{"a", "a-b", "b", "m", "z", "é"}
	if got := h.Names(); !slices.Equal(got, want) {
		t.Fatalf("Names() = %q, want %q", got, want)
	}
	if got := h.Get("a"); !slices.Equal(got, []string{"a", "a"}) {
		t.Fatalf("Get(a) = %q", got)
	}
}

func TestNextOutsideAHost(t *testing.T) {
	got, err := NewContext().Next()
	if got != nil || !errors.Is(err, ErrNoHost) {
		t.Fatalf("Next() = %v, %v", got, err)
	}
	if err.Error() != "next: not running inside a Scale host" {
		t.Fatalf("message %q", err)
	}
}

func TestSetNextStandsInForTheChain(t *testing.T) {
	ctx := NewContext()
	ctx.Request().SetBody("sent")
	ctx.Response().SetBody("so far")
	calls := 0
	ctx.SetNext(func(rest *Context) (*Context, error) {
		calls++
		if got := string(rest.Request().Body()); got != "sent" {
			t.Errorf("the stand-in got request body %q", got)
		}
		if _, err := rest.Next(); !errors.Is(err, ErrNoHost) {
			t.Errorf("Next inside the stand-in = %v, want ErrNoHost", err)
		}
		if rest.Request().Headers().Get("x-fail") != nil {
			return nil, errors.New("down")
		}
		rest.Response().SetBody("answered")
		return rest, nil
	})
	got, err := ctx.Next()
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Response().Body()) != "answered" || string(ctx.Response().Body()) != "so far" {
		t.Fatalf("got %q, ctx %q: the answer belongs in the returned context only", got.Response().Body(), ctx.Response().Body())
	}
	// The returned context keeps the stand-in.
	if _, err := got.Next(); err != nil {
		t.Fatal(err)
	}
	ctx.Request().Headers().Set("x-fail", []string{"1"})
	if _, err := ctx.Next(); err == nil || err.Error() != "down" {
		t.Fatalf("err = %v, want the stand-in's", err)
	}
	if calls != 3 {
		t.Fatalf("%d calls", calls)
	}
	ctx.SetNext(nil)
	if _, err := ctx.Next(); !errors.Is(err, ErrNoHost) {
		t.Fatalf("err = %v after removing the stand-in", err)
	}
}
