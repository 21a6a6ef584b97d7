package signature

import (
	"iter"
	"slices"
	"strings"
)

// Headers maps header names to their values, kept in ascending byte order of
// the names (the order they are encoded in).
//
// Names must be UTF-8, as the wire format requires: a name that is not is
// stored and looked up with each invalid byte sequence replaced by U+FFFD.
//
// The methods lower-case the names they are given (ASCII letters only), as
// HTTP/2 does: Set("Content-Type", ...) stores "content-type", and
// Get("Content-Type") finds it. Names that arrive on the wire are kept as
// they came; Get and Delete try the name exactly as given first.
//
// The zero Headers is empty and ready to use.
type Headers struct {
	entries []headerEntry // sorted by name, names unique
}

type headerEntry struct {
	name   string
	values []string
}

// lowerASCII lower-cases the ASCII letters of s and leaves every other byte
// alone (as Rust's to_ascii_lowercase does; strings.ToLower would also fold
// non-ASCII letters).
func lowerASCII(s string) string {
	i := 0
	for i < len(s) && (s[i] < 'A' || s[i] > 'Z') {
		i++
	}
	if i == len(s) {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		if c := b[i]; 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}

// find returns where name is, or where it would go, and whether it is there.
func (h *Headers) find(name string) (int, bool) {
	return slices.BinarySearchFunc(h.entries, name, func(e headerEntry, name string) int {
		return strings.Compare(e.name, name)
	})
}

// lookup finds name as given, then lower-cased.
func (h *Headers) lookup(name string) (int, bool) {
	name = wireString(name)
	if i, ok := h.find(name); ok {
		return i, true
	}
	if lower := lowerASCII(name); lower != name {
		return h.find(lower)
	}
	return 0, false
}

// Get returns the values of header name (tried as given, then lower-cased),
// or nil when there is no such header. The slice is the stored one; change
// values with Set or Append.
func (h *Headers) Get(name string) []string {
	if i, ok := h.lookup(name); ok {
		return h.entries[i].values
	}
	return nil
}

// First returns the first value of header name, or "" when it has none.
func (h *Headers) First(name string) string {
	if values := h.Get(name); len(values) > 0 {
		return values[0]
	}
	return ""
}

// Has reports whether header name is present (possibly with no values).
func (h *Headers) Has(name string) bool {
	_, ok := h.lookup(name)
	return ok
}

// Set replaces the values of header name, stored lower-cased. The headers
// keep a copy of values.
func (h *Headers) Set(name string, values []string) {
	h.SetRaw(lowerASCII(name), values)
}

// SetRaw replaces the values of header name, stored exactly as given,
// without lower-casing. The headers keep a copy of values.
func (h *Headers) SetRaw(name string, values []string) {
	h.put(wireString(name), slices.Clone(values))
}

// put stores values (not copied) under name as given; name must be valid
// UTF-8, so that the order kept here is the order on the wire.
func (h *Headers) put(name string, values []string) {
	if values == nil {
		values = []string{}
	}
	i, ok := h.find(name)
	if ok {
		h.entries[i].values = values
		return
	}
	h.entries = slices.Insert(h.entries, i, headerEntry{name: name, values: values})
}

// Append adds value to header name (stored lower-cased), after any values it
// already has.
func (h *Headers) Append(name, value string) {
	name = lowerASCII(wireString(name))
	i, ok := h.find(name)
	if ok {
		h.entries[i].values = append(h.entries[i].values, value)
		return
	}
	h.entries = slices.Insert(h.entries, i, headerEntry{name: name, values: []string{value}})
}

// Delete removes header name (tried as given, then lower-cased) and returns
// the values it had, or nil when there was no such header.
func (h *Headers) Delete(name string) []string {
	i, ok := h.lookup(name)
	if !ok {
		return nil
	}
	values := h.entries[i].values
	h.entries = slices.Delete(h.entries, i, i+1)
	return values
}

// Len returns the number of distinct header names.
func (h *Headers) Len() int { return len(h.entries) }

// Names returns the header names in ascending byte order.
func (h *Headers) Names() []string {
	names := make([]string, len(h.entries))
	for i, e := range h.entries {
		names[i] = e.name
	}
	return names
}

// All iterates over the headers in ascending byte order of their names. The
// headers must not be changed during the iteration.
func (h *Headers) All() iter.Seq2[string, []string] {
	return func(yield func(string, []string) bool) {
		for _, e := range h.entries {
			if !yield(e.name, e.values) {
				return
			}
		}
	}
}

// Clear removes every header.
func (h *Headers) Clear() { h.entries = nil }
