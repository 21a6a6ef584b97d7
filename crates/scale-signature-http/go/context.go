package signature

import "strconv"

// The defaults of the signature: a scalar equal to its default is left out
// of the encoding.
const (
	// DefaultMethod is the method of a new request.
	DefaultMethod = "GET"
	// DefaultProtocol is the protocol of a new request.
	DefaultProtocol = "HTTP/1.1"
	// DefaultStatusCode is the status of a new response.
	DefaultStatusCode = 200
)

// Context is everything one function of a chain sees: the request and the
// response built so far.
//
// Make one with [NewContext] or [DecodeContext]. The zero Context is not the
// default one: its method, protocol and status are empty and 0.
type Context struct {
	request  Request
	response Response
	// rawRequest is the request's encoding while requestPending is set: a
	// run's context decodes its request only when the function asks for it
	// (see Context.Request), and hands it on as these bytes if it never does.
	rawRequest     []byte
	requestPending bool
	// requestErr is why the pending request did not decode, when it did not.
	requestErr error
	// fakeNext stands in for the rest of the chain outside a Scale host
	// (see Context.SetNext).
	fakeNext Function
}

// NewContext returns a context holding the default request (GET, HTTP/1.1,
// no body, no headers) and the default response (status 200, no body, no
// headers).
func NewContext() *Context {
	c := &Context{}
	c.reset()
	return c
}

// reset puts every field back to its default.
func (c *Context) reset() {
	c.request = Request{method: DefaultMethod, protocol: DefaultProtocol}
	c.response = Response{status: DefaultStatusCode}
}

// Request returns the request, for reading and changing.
func (c *Context) Request() *Request {
	if c.requestPending {
		c.decodePendingRequest()
	}
	return &c.request
}

// decodePendingRequest decodes the request kept encoded. A request that
// does not decode is left as the default one, and the run fails with the
// reason (requestErr).
func (c *Context) decodePendingRequest() {
	c.requestPending = false
	c.request = Request{method: DefaultMethod, protocol: DefaultProtocol}
	if err := decodeRequestFields(c.rawRequest, &c.request, recursionLimit-1); err != nil {
		c.request = Request{method: DefaultMethod, protocol: DefaultProtocol}
		c.requestErr = err
	}
	c.rawRequest = nil
}

// Response returns the response, for reading and changing.
func (c *Context) Response() *Response { return &c.response }

// Next hands the context to the rest of the chain (the next function, or
// after the last one the host's handlers) and returns the context it comes
// back with.
//
// An error from further down the chain is returned as a [*ChainError]
// holding its message; returning it from the function passes the same
// message on. Outside a Scale host (in go test, say) Next returns
// [ErrNoHost], or calls the stand-in set with [Context.SetNext].
//
// Next may be called more than once (each call runs the rest of the chain
// again) or not at all (the chain then stops at this function). The context
// it returns is a new value; c is not changed.
func (c *Context) Next() (*Context, error) {
	return next(c)
}

// SetNext sets a stand-in for the rest of the chain, for unit tests of a
// function outside a Scale host: Next then calls next instead of returning
// [ErrNoHost]. Inside a host, Next always runs the host's chain and the
// stand-in is never called.
//
// As with a host, next gets a copy of the context and c is not changed.
// Next returns the context next returns (the copy, when next returns nil)
// and next's error as it is. The context Next returns keeps the stand-in, so
// a function may call Next again on it; a Next inside next returns
// [ErrNoHost]. A nil next removes the stand-in.
func (c *Context) SetNext(next Function) {
	c.fakeNext = next
}

// Request is an HTTP request as a function sees it.
type Request struct {
	method        string
	uri           string
	contentLength uint64
	protocol      string
	ip            string
	body          []byte
	headers       Headers
}

// Method returns the method, GET by default.
func (r *Request) Method() string { return r.method }

// SetMethod sets the method.
func (r *Request) SetMethod(method string) { r.method = method }

// URI returns the request target as the client sent it (a path and query,
// or a full URI).
func (r *Request) URI() string { return r.uri }

// SetURI sets the request target.
func (r *Request) SetURI(uri string) { r.uri = uri }

// ContentLength returns the announced body length. SetBody and SetBodyBytes
// keep it equal to the length of the body.
func (r *Request) ContentLength() uint64 { return r.contentLength }

// SetContentLength sets the announced body length without touching the body.
func (r *Request) SetContentLength(length uint64) { r.contentLength = length }

// Protocol returns the protocol version, HTTP/1.1 by default.
func (r *Request) Protocol() string { return r.protocol }

// SetProtocol sets the protocol version.
func (r *Request) SetProtocol(protocol string) { r.protocol = protocol }

// IP returns the client's address, empty when unknown.
func (r *Request) IP() string { return r.ip }

// SetIP sets the client's address.
func (r *Request) SetIP(ip string) { r.ip = ip }

// Body returns the body. The slice is the request's own: changes to it
// change the body.
func (r *Request) Body() []byte { return r.body }

// SetBody replaces the body with a string and sets the content length.
func (r *Request) SetBody(body string) {
	r.body = []byte(body)
	r.contentLength = uint64(len(body))
}

// SetBodyBytes replaces the body and sets the content length. The request
// keeps body itself, not a copy.
func (r *Request) SetBodyBytes(body []byte) {
	r.body = body
	r.contentLength = uint64(len(body))
}

// Headers returns the request headers, for reading and changing.
func (r *Request) Headers() *Headers { return &r.headers }

// Response is the response a function builds.
type Response struct {
	status  uint16
	body    []byte
	headers Headers
}

// StatusCode returns the status code, 200 by default.
func (r *Response) StatusCode() int { return int(r.status) }

// SetStatusCode sets the status code. A code outside 100-599 is refused
// with an [*InvalidStatusCodeError] and the status is left as it was.
func (r *Response) SetStatusCode(code int) error {
	if code < 100 || code > 599 {
		return &InvalidStatusCodeError{Code: code}
	}
	r.status = uint16(code)
	return nil
}

// Body returns the body. The slice is the response's own: changes to it
// change the body.
func (r *Response) Body() []byte { return r.body }

// SetBody replaces the body with a string.
func (r *Response) SetBody(body string) { r.body = []byte(body) }

// SetBodyBytes replaces the body. The response keeps body itself, not a copy.
func (r *Response) SetBodyBytes(body []byte) { r.body = body }

// Headers returns the response headers, for reading and changing.
func (r *Response) Headers() *Headers { return &r.headers }

// InvalidStatusCodeError is the error of [Response.SetStatusCode] for a code
// outside 100-599.
type InvalidStatusCodeError struct {
	// Code is the refused value.
	Code int
}

func (e *InvalidStatusCodeError) Error() string {
	return "invalid status code " + strconv.Itoa(e.Code) + ": must be within 100-599"
}
