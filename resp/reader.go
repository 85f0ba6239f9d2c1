package resp

import (
	"bufio"
	"io"
	"math"
	"slices"
	"strconv"
)

// Limits bounds what a [Reader] accepts. A zero field takes its default.
// Every limit is checked before memory is reserved for what it bounds.
type Limits struct {
	// MaxBulkLen is the largest bulk string, bulk error or verbatim string,
	// in bytes, and the largest total of a streamed string. Default 32 MiB,
	// the hard output-buffer limit Redis applies to pub/sub clients.
	MaxBulkLen int
	// MaxElements is the largest number of elements in one array, set or
	// push, of key/value pairs in one map or attribute, and of chunks in
	// one streamed string. Default 1<<20.
	MaxElements int
	// MaxDepth is how deeply aggregates may nest: an aggregate at the top
	// level is depth 1, an aggregate inside it depth 2; scalars do not
	// count. An attribute adds a level to the value it precedes, so a chain
	// of attributes is bounded too. Default 64 (a lock client needs about 3).
	MaxDepth int
	// MaxLineLen is the longest line: simple strings, simple errors and
	// headers, without CRLF. Default 64 KiB.
	MaxLineLen int
}

// Defaults of [Limits].
const (
	DefaultMaxBulkLen  = 32 << 20
	DefaultMaxElements = 1 << 20
	DefaultMaxDepth    = 64
	DefaultMaxLineLen  = 64 << 10
)

func (l Limits) withDefaults() Limits {
	if l.MaxBulkLen <= 0 {
		l.MaxBulkLen = DefaultMaxBulkLen
	}
	if l.MaxElements <= 0 {
		l.MaxElements = DefaultMaxElements
	}
	// Map lengths are doubled to count keys and values: keep that in range.
	l.MaxElements = min(l.MaxElements, math.MaxInt/2)
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	if l.MaxLineLen <= 0 {
		l.MaxLineLen = DefaultMaxLineLen
	}
	return l
}

// preallocHint caps how many elements or bytes are reserved up front for a
// declared length; beyond it, storage grows as data arrives.
const preallocHint = 1024

// bulkChunk is how many bytes of a large bulk string are read per step.
const bulkChunk = 64 << 10

// Reader decodes RESP2 and RESP3 values from a stream. It is not safe for
// concurrent use.
type Reader struct {
	br  *bufio.Reader
	lim Limits

	// KeepAttributes makes Read attach RESP3 attributes to the value they
	// precede (in [Value.Attrs]). When false they are read, checked against
	// the limits and dropped.
	KeepAttributes bool

	arena []byte  // string contents of the current reply
	line  []byte  // a line longer than br's buffer, gathered
	stack []Value // elements of aggregates being read
	slab  []Value // finished element lists of the current reply
	err   error   // sticky protocol or I/O error
}

// NewReader returns a Reader that reads from r with the given limits (zero
// fields take their defaults).
func NewReader(r io.Reader, lim Limits) *Reader {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 4096)
	}
	return &Reader{br: br, lim: lim.withDefaults()}
}

// Limits returns the limits in force, defaults filled in.
func (r *Reader) Limits() Limits { return r.lim }

// Buffered returns how many bytes are buffered and not yet decoded.
func (r *Reader) Buffered() int { return r.br.Buffered() }

// Read decodes the next value. The value shares memory with the Reader and
// is valid only until the next call to Read.
//
// A malformed stream or a limit exceeded gives a [*ProtocolError]; an I/O
// error is returned as is (io.EOF only when the stream ends between values,
// io.ErrUnexpectedEOF inside one). Either error is sticky: every later Read
// returns it again.
func (r *Reader) Read() (Value, error) {
	if r.err != nil {
		return Value{}, r.err
	}
	r.arena = r.arena[:0]
	r.stack = r.stack[:0]
	r.slab = r.slab[:0]
	v, err := r.readValue(1, true)
	if err != nil {
		r.err = err
		return Value{}, err
	}
	return v, nil
}

// readLine returns the next line without its CRLF. The slice is valid only
// until the next read. When the stream ends before the line does, the error
// is io.EOF if no byte of the line arrived and io.ErrUnexpectedEOF if some
// did.
func (r *Reader) readLine() ([]byte, error) {
	line, err := r.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		// Longer than the buffer: gather it in r.line, within the limit.
		// Not in the arena, where it would split a streamed string.
		r.line = append(r.line[:0], line...)
		for err == bufio.ErrBufferFull {
			if len(r.line) > r.lim.MaxLineLen+2 {
				return nil, limitErr("MaxLineLen", "line exceeds limit "+strconv.Itoa(r.lim.MaxLineLen))
			}
			line, err = r.br.ReadSlice('\n')
			r.line = append(r.line, line...)
		}
		line = r.line
	}
	if err != nil {
		if len(line) > 0 {
			err = unexpected(err)
		}
		return nil, err
	}
	n := len(line)
	if n < 2 || line[n-2] != '\r' {
		return nil, protoErr("line not terminated by CRLF")
	}
	if n-2 > r.lim.MaxLineLen {
		return nil, limitErr("MaxLineLen", "line exceeds limit "+strconv.Itoa(r.lim.MaxLineLen))
	}
	return line[:n-2], nil
}

// parseInt parses a RESP integer strictly: an optional sign, then "0" or a
// digit string without leading zeros, with an explicit overflow check (as
// hiredis's string2ll does).
func parseInt(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	neg := false
	switch b[0] {
	case '-':
		neg = true
		b = b[1:]
	case '+':
		b = b[1:]
	}
	if len(b) == 0 || (b[0] == '0' && len(b) > 1) {
		return 0, false
	}
	var u uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if u > (math.MaxUint64-d)/10 {
			return 0, false
		}
		u = u*10 + d
	}
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		return -int64(u), true // -(1<<63) wraps to itself, which is right
	}
	if u > math.MaxInt64 {
		return 0, false
	}
	return int64(u), true
}

// length parses a length header: digits without sign or leading zeros, the
// RESP2 null length "-1" (returned as -1) or the RESP3 streamed length "?"
// (returned as -2). A length beyond max exceeds the Limits field limit.
func (r *Reader) length(b []byte, what string, max int, limit string) (int, error) {
	switch string(b) {
	case "?":
		return -2, nil
	case "-1":
		return -1, nil
	}
	n, ok := parseInt(b)
	if !ok || b[0] == '-' || b[0] == '+' {
		return 0, protoErr("invalid " + what + " length " + strconv.Quote(string(b)))
	}
	if n > int64(max) {
		return 0, limitErr(limit, what+" length "+strconv.FormatInt(n, 10)+" exceeds limit "+strconv.Itoa(max))
	}
	return int(n), nil
}

// keep copies b into the arena so it survives later reads.
func (r *Reader) keep(b []byte) []byte {
	start := len(r.arena)
	r.arena = append(r.arena, b...)
	return r.arena[start:len(r.arena):len(r.arena)]
}

// readBulk reads n bytes and the CRLF after them into the arena, growing it
// in steps as the bytes arrive.
func (r *Reader) readBulk(n int) ([]byte, error) {
	start := len(r.arena)
	for got := 0; got < n; {
		step := min(n-got, bulkChunk)
		if cap(r.arena)-len(r.arena) < step {
			// Double rather than let append grow large slices by 1.25x:
			// a bulk then costs about 4x its size in all instead of 6x,
			// and never more than twice what has arrived.
			r.arena = slices.Grow(r.arena, min(n-got, max(step, cap(r.arena))))
		}
		m, err := io.ReadFull(r.br, r.arena[len(r.arena):len(r.arena)+step])
		r.arena = r.arena[:len(r.arena)+m]
		got += m
		if err != nil {
			return nil, unexpected(err)
		}
	}
	// Peek rather than read into a local array, which would escape to the
	// heap through the io.Reader interface: one allocation per bulk.
	crlf, err := r.br.Peek(2)
	if len(crlf) > 0 && crlf[0] != '\r' || len(crlf) > 1 && crlf[1] != '\n' {
		return nil, protoErr("bulk data not terminated by CRLF")
	}
	if err != nil {
		return nil, unexpected(err)
	}
	r.br.Discard(2) // cannot fail after a successful Peek(2)
	return r.arena[start:len(r.arena):len(r.arena)], nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readValue reads one value at the given depth. top is true for the first
// byte of a reply, where a clean EOF is io.EOF rather than unexpected.
func (r *Reader) readValue(depth int, top bool) (Value, error) {
	line, err := r.readLine()
	if err != nil {
		if !top {
			err = unexpected(err)
		}
		return Value{}, err
	}
	if len(line) == 0 {
		return Value{}, protoErr("empty line")
	}
	t, body := Type(line[0]), line[1:]
	v := Value{Type: t}
	switch t {
	case TypeSimpleString, TypeError:
		v.Str = r.keep(body)
	case TypeInteger:
		n, ok := parseInt(body)
		if !ok {
			return Value{}, protoErr("invalid integer " + strconv.Quote(string(body)))
		}
		v.Int = n
	case TypeNull:
		if len(body) != 0 {
			return Value{}, protoErr("invalid null")
		}
	case TypeBoolean:
		switch string(body) {
		case "t":
			v.Int = 1
		case "f":
		default:
			return Value{}, protoErr("invalid boolean " + strconv.Quote(string(body)))
		}
	case TypeDouble:
		f, ok := parseDouble(body)
		if !ok {
			return Value{}, protoErr("invalid double " + strconv.Quote(string(body)))
		}
		v.Float = f
	case TypeBigNumber:
		if !validBigNumber(body) {
			return Value{}, protoErr("invalid big number " + strconv.Quote(string(body)))
		}
		v.Str = r.keep(body)
	case TypeBulkString, TypeBulkError, TypeVerbatim:
		n, err := r.length(body, t.String(), r.lim.MaxBulkLen, "MaxBulkLen")
		if err != nil {
			return Value{}, err
		}
		switch {
		case n == -1 && t == TypeBulkString:
			return Value{Type: TypeNull}, nil
		case n == -2 && t == TypeBulkString:
			v.Str, err = r.readStreamedString()
			if err != nil {
				return Value{}, err
			}
			return v, nil
		case n < 0:
			return Value{}, protoErr("invalid " + t.String() + " length " + strconv.Quote(string(body)))
		}
		if v.Str, err = r.readBulk(n); err != nil {
			return Value{}, err
		}
		if t == TypeVerbatim {
			if len(v.Str) < 4 || v.Str[3] != ':' {
				return Value{}, protoErr("verbatim string without format")
			}
			copy(v.Format[:], v.Str[:3])
			v.Str = v.Str[4:]
		}
	case TypeArray, TypeSet, TypePush, TypeMap, TypeAttribute:
		per := 1
		if t == TypeMap || t == TypeAttribute {
			per = 2
		}
		n, err := r.length(body, t.String(), r.lim.MaxElements, "MaxElements")
		if err != nil {
			return Value{}, err
		}
		switch {
		case n == -1 && t == TypeArray:
			return Value{Type: TypeNull}, nil
		case n == -1, n == -2 && (t == TypeAttribute || t == TypePush):
			return Value{}, protoErr("invalid " + t.String() + " length " + strconv.Quote(string(body)))
		}
		if depth > r.lim.MaxDepth {
			return Value{}, limitErr("MaxDepth", "nesting exceeds limit "+strconv.Itoa(r.lim.MaxDepth))
		}
		arena, slab := len(r.arena), len(r.slab)
		elems, err := r.readElems(n, per, depth)
		if err != nil {
			return Value{}, err
		}
		if t != TypeAttribute {
			v.Elems = elems
			return v, nil
		}
		if !r.KeepAttributes {
			// Nothing refers to the dropped pairs: reuse their memory, so
			// attributes cost nothing to skip.
			r.arena = r.arena[:arena]
			clear(r.slab[slab:])
			r.slab = r.slab[:slab]
			elems = nil
		}
		// An attribute describes the value that follows it.
		next, err := r.readValue(depth+1, false)
		if err != nil {
			return Value{}, err
		}
		if elems != nil {
			next.Attrs = append(elems, next.Attrs...)
		}
		return next, nil
	default:
		return Value{}, protoErr("unknown type byte " + strconv.QuoteRune(rune(t)))
	}
	return v, nil
}

// readElems reads n values (n*per for maps; n == -2 means streamed, ended
// by "."), returning them as one slice of the slab.
func (r *Reader) readElems(n, per, depth int) ([]Value, error) {
	base := len(r.stack)
	if n >= 0 {
		r.stack = slices.Grow(r.stack, min(n, preallocHint)*per)
	}
	for i := 0; n < 0 || i < n*per; i++ {
		if n < 0 {
			if b, err := r.br.Peek(1); err == nil && b[0] == '.' {
				line, err := r.readLine()
				if err != nil {
					return nil, unexpected(err)
				}
				if len(line) != 1 {
					return nil, protoErr("invalid end of streamed aggregate")
				}
				if i%per != 0 {
					return nil, protoErr("streamed map ended after a key")
				}
				break
			}
			// Checked after the end marker, so that exactly MaxElements
			// elements are accepted.
			if i >= r.lim.MaxElements*per {
				return nil, limitErr("MaxElements", "streamed aggregate exceeds limit "+strconv.Itoa(r.lim.MaxElements))
			}
		}
		e, err := r.readValue(depth+1, false)
		if err != nil {
			return nil, err
		}
		r.stack = append(r.stack, e)
	}
	// Move the finished list to the slab; lists already there may point into
	// an older slab array, which stays valid and complete.
	start := len(r.slab)
	r.slab = append(r.slab, r.stack[base:]...)
	clear(r.stack[base:])
	r.stack = r.stack[:base]
	return r.slab[start:len(r.slab):len(r.slab)], nil
}

// readStreamedString reads the chunks of a streamed string ("$?") up to the
// zero-length terminator. The total is bounded by MaxBulkLen and the number
// of chunks by MaxElements, so that endless one-byte chunks end quickly.
func (r *Reader) readStreamedString() ([]byte, error) {
	start := len(r.arena)
	for chunks := 0; ; chunks++ {
		line, err := r.readLine()
		if err != nil {
			return nil, unexpected(err)
		}
		if len(line) == 0 || line[0] != ';' {
			return nil, protoErr("invalid streamed string chunk")
		}
		n, err := r.length(line[1:], "chunk", r.lim.MaxBulkLen, "MaxBulkLen")
		if err != nil {
			return nil, err
		}
		if n < 0 {
			return nil, protoErr("invalid chunk length")
		}
		if n == 0 {
			return r.arena[start:len(r.arena):len(r.arena)], nil
		}
		if chunks >= r.lim.MaxElements {
			return nil, limitErr("MaxElements", "streamed string exceeds limit of "+strconv.Itoa(r.lim.MaxElements)+" chunks")
		}
		if n > r.lim.MaxBulkLen-(len(r.arena)-start) {
			return nil, limitErr("MaxBulkLen", "streamed string exceeds limit "+strconv.Itoa(r.lim.MaxBulkLen))
		}
		if _, err := r.readBulk(n); err != nil {
			return nil, err
		}
	}
}

// parseDouble accepts what RESP3 allows: inf, -inf, nan, and decimal
// numbers with optional fraction and exponent. It rejects the extras of
// strconv.ParseFloat (hex, underscores, "Infinity").
func parseDouble(b []byte) (float64, bool) {
	switch string(b) {
	case "inf", "+inf":
		return math.Inf(1), true
	case "-inf":
		return math.Inf(-1), true
	case "nan", "-nan":
		return math.NaN(), true
	}
	i := 0
	if i < len(b) && (b[i] == '-' || b[i] == '+') {
		i++
	}
	digits := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
		digits++
	}
	if i < len(b) && b[i] == '.' {
		i++
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			digits++
		}
	}
	if digits == 0 {
		return 0, false
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '-' || b[i] == '+') {
			i++
		}
		exp := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			exp++
		}
		if exp == 0 {
			return 0, false
		}
	}
	if i != len(b) {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil && f == 0 && !isRangeErr(err) {
		return 0, false
	}
	return f, true // out of range saturates to ±Inf or 0, as C's strtod does
}

func isRangeErr(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

func validBigNumber(b []byte) bool {
	if len(b) > 0 && (b[0] == '-' || b[0] == '+') {
		b = b[1:]
	}
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
