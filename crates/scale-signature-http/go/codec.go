package signature

// The protobuf codec of the HTTP signature, written by hand against
// proto/http_signature.proto. It must produce exactly the bytes of the Rust
// codec (src/message.rs), and accept and refuse exactly what that codec (prost)
// accepts and refuses; the shared vectors in testdata/vectors hold the two
// together.
//
// Canonical encoding: fields in ascending tag order; a scalar equal to its
// default (method "GET", protocol "HTTP/1.1", status 200, everything else
// empty or 0) is left out; Context.request and Context.response are always
// written; header entries go in ascending byte order of their names, each
// writing its name (1) and its values message (2), with every value written.

import (
	"math"
	"math/bits"
	"slices"
	"strings"
	"unicode/utf8"
)

// Wire types.
const (
	wireVarint     = 0
	wireFixed64    = 1
	wireBytes      = 2
	wireStartGroup = 3
	wireEndGroup   = 4
	wireFixed32    = 5
)

// recursionLimit is how deep messages and groups may nest, counted as prost
// counts it, so that both codecs refuse the same inputs.
const recursionLimit = 100

// maxHeaderItems is how many names and values together one decoding of a
// request's or response's fields may put in its header map (the Rust
// codec's MAX_HEADER_ITEMS): each entry counts one for its name and one per
// value, entries that replace earlier ones of the same name included.
const maxHeaderItems = 8192

// ---------------------------------------------------------------------------
// Encoding

func varintSize(v uint64) int {
	return (bits.Len64(v|1) + 6) / 7
}

func appendVarint(buf []byte, v uint64) []byte {
	for v >= 0x80 {
		buf = append(buf, byte(v)|0x80)
		v >>= 7
	}
	return append(buf, byte(v))
}

func keySize(tag uint32) int {
	return varintSize(uint64(tag) << 3)
}

func appendKey(buf []byte, tag uint32, wireType int) []byte {
	return appendVarint(buf, uint64(tag)<<3|uint64(wireType))
}

// wireString is s, or, when s is not valid UTF-8, s with every invalid byte
// sequence replaced by U+FFFD: the wire format (and the host's decoder)
// takes UTF-8 strings only.
func wireString(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// bytesFieldSize is the size of a length-delimited field of n bytes.
func bytesFieldSize(tag uint32, n int) int {
	return keySize(tag) + varintSize(uint64(n)) + n
}

func appendBytesField(buf []byte, tag uint32, b []byte) []byte {
	buf = appendKey(buf, tag, wireBytes)
	buf = appendVarint(buf, uint64(len(b)))
	return append(buf, b...)
}

func appendStringField(buf []byte, tag uint32, s string) []byte {
	buf = appendKey(buf, tag, wireBytes)
	buf = appendVarint(buf, uint64(len(s)))
	return append(buf, s...)
}

func headerValuesSize(values []string) int {
	n := 0
	for _, v := range values {
		n += bytesFieldSize(1, len(wireString(v)))
	}
	return n
}

func headerEntrySize(e *headerEntry) int {
	return bytesFieldSize(1, len(wireString(e.name))) + bytesFieldSize(2, headerValuesSize(e.values))
}

func headersSize(tag uint32, h *Headers) int {
	n := 0
	for i := range h.entries {
		n += bytesFieldSize(tag, headerEntrySize(&h.entries[i]))
	}
	return n
}

func appendHeaders(buf []byte, tag uint32, h *Headers) []byte {
	for i := range h.entries {
		e := &h.entries[i]
		buf = appendKey(buf, tag, wireBytes)
		buf = appendVarint(buf, uint64(headerEntrySize(e)))
		buf = appendStringField(buf, 1, wireString(e.name))
		buf = appendKey(buf, 2, wireBytes)
		buf = appendVarint(buf, uint64(headerValuesSize(e.values)))
		for _, v := range e.values {
			buf = appendStringField(buf, 1, wireString(v))
		}
	}
	return buf
}

func requestSize(r *Request) int {
	n := 0
	if r.method != DefaultMethod {
		n += bytesFieldSize(1, len(wireString(r.method)))
	}
	if r.uri != "" {
		n += bytesFieldSize(2, len(wireString(r.uri)))
	}
	if r.contentLength != 0 {
		n += keySize(3) + varintSize(r.contentLength)
	}
	if r.protocol != DefaultProtocol {
		n += bytesFieldSize(4, len(wireString(r.protocol)))
	}
	if r.ip != "" {
		n += bytesFieldSize(5, len(wireString(r.ip)))
	}
	if len(r.body) != 0 {
		n += bytesFieldSize(6, len(r.body))
	}
	return n + headersSize(7, &r.headers)
}

func appendRequest(buf []byte, r *Request) []byte {
	if r.method != DefaultMethod {
		buf = appendStringField(buf, 1, wireString(r.method))
	}
	if r.uri != "" {
		buf = appendStringField(buf, 2, wireString(r.uri))
	}
	if r.contentLength != 0 {
		buf = appendKey(buf, 3, wireVarint)
		buf = appendVarint(buf, r.contentLength)
	}
	if r.protocol != DefaultProtocol {
		buf = appendStringField(buf, 4, wireString(r.protocol))
	}
	if r.ip != "" {
		buf = appendStringField(buf, 5, wireString(r.ip))
	}
	if len(r.body) != 0 {
		buf = appendBytesField(buf, 6, r.body)
	}
	return appendHeaders(buf, 7, &r.headers)
}

func responseSize(r *Response) int {
	n := 0
	if r.status != DefaultStatusCode {
		n += keySize(1) + varintSize(uint64(r.status))
	}
	if len(r.body) != 0 {
		n += bytesFieldSize(2, len(r.body))
	}
	return n + headersSize(3, &r.headers)
}

func appendResponse(buf []byte, r *Response) []byte {
	if r.status != DefaultStatusCode {
		buf = appendKey(buf, 1, wireVarint)
		buf = appendVarint(buf, uint64(r.status))
	}
	if len(r.body) != 0 {
		buf = appendBytesField(buf, 2, r.body)
	}
	return appendHeaders(buf, 3, &r.headers)
}

// EncodedLen returns the length of the context's encoding.
func (c *Context) EncodedLen() int {
	return bytesFieldSize(1, c.requestSize()) + bytesFieldSize(2, responseSize(&c.response))
}

// requestSize is the length of the request's encoding: the bytes it came as
// while it has not been decoded.
func (c *Context) requestSize() int {
	if c.requestPending {
		return len(c.rawRequest)
	}
	return requestSize(&c.request)
}

// appendRequest appends the request's encoding, the bytes it came as while
// it has not been decoded.
func (c *Context) appendRequest(buf []byte) []byte {
	if c.requestPending {
		return append(buf, c.rawRequest...)
	}
	return appendRequest(buf, &c.request)
}

// Encode appends the canonical encoding of the context to buf and returns
// the extended buffer.
//
// Strings that are not valid UTF-8 are written with each invalid byte
// sequence replaced by U+FFFD, as the wire format takes UTF-8 only.
func (c *Context) Encode(buf []byte) []byte {
	reqLen, respLen := c.requestSize(), responseSize(&c.response)
	buf = slices.Grow(buf, bytesFieldSize(1, reqLen)+bytesFieldSize(2, respLen))
	buf = appendKey(buf, 1, wireBytes)
	buf = appendVarint(buf, uint64(reqLen))
	buf = c.appendRequest(buf)
	buf = appendKey(buf, 2, wireBytes)
	buf = appendVarint(buf, uint64(respLen))
	return appendResponse(buf, &c.response)
}

// RunResult is what a run hands back, as the guest's run export returns it
// and as the host answers a call to next: either the resulting context or
// the message of the error that ended the run.
type RunResult struct {
	// Context is the resulting context when Failed is false.
	Context *Context
	// Failed tells that the run ended with an error.
	Failed bool
	// Message is the error message when Failed is true. An empty message is
	// still an error.
	Message string
}

// Encode appends the encoding of the result to buf and returns the extended
// buffer. A successful result with a nil Context encodes the default context.
func (r *RunResult) Encode(buf []byte) []byte {
	if r.Failed {
		return EncodeErrorResult(buf, r.Message)
	}
	ctx := r.Context
	if ctx == nil {
		ctx = NewContext()
	}
	return EncodeContextResult(buf, ctx)
}

// EncodeContextResult appends the encoding of a successful RunResult holding
// ctx (field 1) to buf and returns the extended buffer.
func EncodeContextResult(buf []byte, ctx *Context) []byte {
	reqLen, respLen := ctx.requestSize(), responseSize(&ctx.response)
	ctxLen := bytesFieldSize(1, reqLen) + bytesFieldSize(2, respLen)
	buf = slices.Grow(buf, bytesFieldSize(1, ctxLen))
	buf = appendKey(buf, 1, wireBytes)
	buf = appendVarint(buf, uint64(ctxLen))
	return ctx.Encode(buf)
}

// EncodeErrorResult appends the encoding of a failed RunResult with message
// (field 2) to buf and returns the extended buffer. A message that is not
// valid UTF-8 is written with each invalid byte sequence replaced by U+FFFD.
func EncodeErrorResult(buf []byte, message string) []byte {
	return appendStringField(buf, 2, wireString(message))
}

// ---------------------------------------------------------------------------
// Decoding

// DecodeError tells why bytes are not a valid encoding of the message asked for.
type DecodeError struct {
	reason      string
	emptyResult bool
}

func (e *DecodeError) Error() string {
	if e.emptyResult {
		return "malformed run result: it holds neither a context nor an error"
	}
	return "malformed http signature message: " + e.reason
}

func malformed(reason string) error { return &DecodeError{reason: reason} }

var (
	errVarint       = malformed("invalid varint")
	errKey          = malformed("invalid key value")
	errWireTypeVal  = malformed("invalid wire type value")
	errTagZero      = malformed("invalid tag value: 0")
	errUnderflow    = malformed("buffer underflow")
	errWireType     = malformed("invalid wire type for the field")
	errNotUTF8      = malformed("invalid string value: data is not UTF-8 encoded")
	errRecursion    = malformed("recursion limit reached")
	errEndGroup     = malformed("unexpected end group tag")
	errStatusTooBig = malformed("status_code does not fit in 16 bits")
	errTooManyItems = malformed("more header names and values than a header map may hold")
	errEmptyResult  = &DecodeError{emptyResult: true}
)

// readVarint reads a varint of at most 10 bytes whose value fits in 64 bits.
func readVarint(b []byte) (uint64, int, error) {
	var v uint64
	for i := 0; i < 10 && i < len(b); i++ {
		c := b[i]
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			if i == 9 && c > 1 {
				return 0, 0, errVarint
			}
			return v, i + 1, nil
		}
	}
	return 0, 0, errVarint
}

func readKey(b []byte) (tag uint32, wireType int, n int, err error) {
	key, n, err := readVarint(b)
	if err != nil {
		return 0, 0, 0, err
	}
	if key > math.MaxUint32 {
		return 0, 0, 0, errKey
	}
	wireType = int(key & 7)
	if wireType > wireFixed32 {
		return 0, 0, 0, errWireTypeVal
	}
	tag = uint32(key) >> 3
	if tag == 0 {
		return 0, 0, 0, errTagZero
	}
	return tag, wireType, n, nil
}

// readDelimited reads a length prefix and the bytes it announces.
func readDelimited(b []byte) ([]byte, int, error) {
	l, n, err := readVarint(b)
	if err != nil {
		return nil, 0, err
	}
	if l > uint64(len(b)-n) {
		return nil, 0, errUnderflow
	}
	end := n + int(l)
	return b[n:end:end], end, nil
}

func readBytesField(b []byte, wireType int) ([]byte, int, error) {
	if wireType != wireBytes {
		return nil, 0, errWireType
	}
	return readDelimited(b)
}

func readStringField(b []byte, wireType int) (string, int, error) {
	raw, n, err := readBytesField(b, wireType)
	if err != nil {
		return "", 0, err
	}
	if !utf8.Valid(raw) {
		return "", 0, errNotUTF8
	}
	return string(raw), n, nil
}

func readVarintField(b []byte, wireType int) (uint64, int, error) {
	if wireType != wireVarint {
		return 0, 0, errWireType
	}
	return readVarint(b)
}

// readMessageField reads the bytes of an embedded message, whose fields are
// then decoded at depth-1.
func readMessageField(b []byte, wireType int, depth int) ([]byte, int, error) {
	if wireType != wireBytes {
		return nil, 0, errWireType
	}
	if depth == 0 {
		return nil, 0, errRecursion
	}
	return readDelimited(b)
}

// skipField skips the value of an unknown field (its key already read) and
// returns how many bytes it took.
func skipField(b []byte, wireType int, tag uint32, depth int) (int, error) {
	if depth == 0 {
		return 0, errRecursion
	}
	switch wireType {
	case wireVarint:
		_, n, err := readVarint(b)
		return n, err
	case wireFixed64, wireFixed32:
		size := 8
		if wireType == wireFixed32 {
			size = 4
		}
		if len(b) < size {
			return 0, errUnderflow
		}
		return size, nil
	case wireBytes:
		_, n, err := readDelimited(b)
		return n, err
	case wireStartGroup:
		pos := 0
		for {
			innerTag, innerType, n, err := readKey(b[pos:])
			if err != nil {
				return 0, err
			}
			pos += n
			if innerType == wireEndGroup {
				if innerTag != tag {
					return 0, errEndGroup
				}
				return pos, nil
			}
			n, err = skipField(b[pos:], innerType, innerTag, depth-1)
			if err != nil {
				return 0, err
			}
			pos += n
		}
	default: // an end group with no start
		return 0, errEndGroup
	}
}

// DecodeContext decodes a context from any valid protobuf encoding of one:
// fields in any order, unknown fields skipped, the last occurrence of a
// scalar winning, a repeated request or response merging into the one
// before it. Bytes that are not a context give a [*DecodeError], never a
// panic. The context shares no memory with b.
func DecodeContext(b []byte) (*Context, error) {
	c := NewContext()
	if err := decodeContextFields(b, c, recursionLimit); err != nil {
		return nil, err
	}
	return c, nil
}

// decodeRunContext decodes a run's input like DecodeContext, but keeps the
// request encoded until the function asks for it, when the input is laid
// out as every encoder writes it (the request, then the response). The
// context shares no memory with b.
func decodeRunContext(b []byte) (*Context, error) {
	request, response, ok := splitContext(b)
	if !ok {
		return DecodeContext(b)
	}
	c := NewContext()
	if err := decodeResponseFields(response, &c.response, recursionLimit-1); err != nil {
		return nil, err
	}
	// A copy: b is the input buffer, which the next run overwrites.
	c.rawRequest = append([]byte(nil), request...)
	c.requestPending = true
	return c, nil
}

// splitContext returns the request and response fields of a context encoded
// as exactly those two, in that order; ok is false for any other layout.
func splitContext(b []byte) (request, response []byte, ok bool) {
	field := func(want uint32) []byte {
		tag, wireType, n, err := readKey(b)
		if err != nil || tag != want || wireType != wireBytes {
			return nil
		}
		contents, m, err := readDelimited(b[n:])
		if err != nil {
			return nil
		}
		b = b[n+m:]
		// Not nil, even when empty: nil means the field is missing.
		return contents[:len(contents):len(contents)]
	}
	if request = field(1); request == nil {
		return nil, nil, false
	}
	if response = field(2); response == nil {
		return nil, nil, false
	}
	return request, response, len(b) == 0
}

func decodeContextFields(b []byte, c *Context, depth int) error {
	for len(b) > 0 {
		tag, wireType, n, err := readKey(b)
		if err != nil {
			return err
		}
		b = b[n:]
		switch tag {
		case 1, 2:
			var sub []byte
			sub, n, err = readMessageField(b, wireType, depth)
			if err == nil {
				if tag == 1 {
					err = decodeRequestFields(sub, &c.request, depth-1)
				} else {
					err = decodeResponseFields(sub, &c.response, depth-1)
				}
			}
		default:
			n, err = skipField(b, wireType, tag, depth)
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

func decodeRequestFields(b []byte, r *Request, depth int) error {
	items := 0
	for len(b) > 0 {
		tag, wireType, n, err := readKey(b)
		if err != nil {
			return err
		}
		b = b[n:]
		switch tag {
		case 1:
			r.method, n, err = readStringField(b, wireType)
		case 2:
			r.uri, n, err = readStringField(b, wireType)
		case 3:
			r.contentLength, n, err = readVarintField(b, wireType)
		case 4:
			r.protocol, n, err = readStringField(b, wireType)
		case 5:
			r.ip, n, err = readStringField(b, wireType)
		case 6:
			var body []byte
			body, n, err = readBytesField(b, wireType)
			if err == nil {
				r.body = slices.Clone(body)
			}
		case 7:
			n, err = decodeHeaderField(b, wireType, &r.headers, depth, &items)
		default:
			n, err = skipField(b, wireType, tag, depth)
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

func decodeResponseFields(b []byte, r *Response, depth int) error {
	items := 0
	for len(b) > 0 {
		tag, wireType, n, err := readKey(b)
		if err != nil {
			return err
		}
		b = b[n:]
		switch tag {
		case 1:
			var v uint64
			v, n, err = readVarintField(b, wireType)
			// A uint32 field keeps the low 32 bits of a longer varint, as
			// prost does; the signature then refuses anything above 16 bits.
			if err == nil {
				if uint32(v) > math.MaxUint16 {
					err = errStatusTooBig
				} else {
					r.status = uint16(v)
				}
			}
		case 2:
			var body []byte
			body, n, err = readBytesField(b, wireType)
			if err == nil {
				r.body = slices.Clone(body)
			}
		case 3:
			n, err = decodeHeaderField(b, wireType, &r.headers, depth, &items)
		default:
			n, err = skipField(b, wireType, tag, depth)
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// decodeHeaderField decodes one map entry and stores it, replacing an
// earlier entry of the same name.
//
// items counts the names and values decoded into h so far; past
// maxHeaderItems the field is refused.
func decodeHeaderField(b []byte, wireType int, h *Headers, depth int, items *int) (int, error) {
	entry, n, err := readMessageField(b, wireType, depth)
	if err != nil {
		return 0, err
	}
	depth--
	var name string
	values := []string{}
	for len(entry) > 0 {
		tag, wireType, m, err := readKey(entry)
		if err != nil {
			return 0, err
		}
		entry = entry[m:]
		switch tag {
		case 1:
			name, m, err = readStringField(entry, wireType)
		case 2:
			var sub []byte
			sub, m, err = readMessageField(entry, wireType, depth)
			if err == nil {
				values, err = decodeHeaderValues(sub, values, depth-1)
			}
		default:
			m, err = skipField(entry, wireType, tag, depth)
		}
		if err != nil {
			return 0, err
		}
		entry = entry[m:]
	}
	*items += 1 + len(values)
	if *items > maxHeaderItems {
		return 0, errTooManyItems
	}
	h.put(name, values)
	return n, nil
}

// decodeHeaderValues appends the values of a HeaderValues message to values.
func decodeHeaderValues(b []byte, values []string, depth int) ([]string, error) {
	for len(b) > 0 {
		tag, wireType, n, err := readKey(b)
		if err != nil {
			return nil, err
		}
		b = b[n:]
		if tag == 1 {
			var v string
			v, n, err = readStringField(b, wireType)
			values = append(values, v)
		} else {
			n, err = skipField(b, wireType, tag, depth)
		}
		if err != nil {
			return nil, err
		}
		b = b[n:]
	}
	return values, nil
}

// DecodeRunResult decodes a RunResult. A context field following another
// merges into it; an error field replaces whatever came before, and a
// context field after an error starts from the default context. Bytes that
// are not a RunResult, or one holding neither field, give a [*DecodeError].
// The result shares no memory with b.
func DecodeRunResult(b []byte) (*RunResult, error) {
	var result *RunResult
	for len(b) > 0 {
		tag, wireType, n, err := readKey(b)
		if err != nil {
			return nil, err
		}
		b = b[n:]
		switch tag {
		case 1:
			var sub []byte
			sub, n, err = readMessageField(b, wireType, recursionLimit)
			if err == nil {
				if result == nil || result.Failed {
					result = &RunResult{Context: NewContext()}
				}
				err = decodeContextFields(sub, result.Context, recursionLimit-1)
			}
		case 2:
			var message string
			message, n, err = readStringField(b, wireType)
			if err == nil {
				result = &RunResult{Failed: true, Message: message}
			}
		default:
			n, err = skipField(b, wireType, tag, recursionLimit)
		}
		if err != nil {
			return nil, err
		}
		b = b[n:]
	}
	if result == nil {
		return nil, errEmptyResult
	}
	return result, nil
}
