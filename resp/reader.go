package resp

import (
	"bufio"
	"io"
	"math"
	"slices"
	"strconv"
	"unsafe"
)

// Limits bounds what a [Reader] accepts. A zero field takes its default.
// Every limit is checked before memory is reserved for what it bounds.
//
// The first four bound one string, aggregate, nesting or line; the last two
// bound a reply as a whole, which is what keeps a Reader's memory in
// proportion to the bytes it is sent. A reply's strings take at most a few
// times their size on the wire, but each value takes a 96-byte [Value]
// however short it is (a null is 3 bytes): MaxReplyValues is what bounds
// that.
type Limits struct {
	// MaxBulkLen is the largest bulk string, bulk error or verbatim string,
	// in bytes, and the largest total of a streamed string. Default 32 MiB,
	// the hard output-buffer limit Redis applies to pub/sub clients.
	MaxBulkLen int
	// MaxElements is the largest number of elements in one array, set or
	// push, of key/value pairs in one map or attribute, and of chunks in
	// one streamed string. Default MaxReplyValues, so that by default one
	// aggregate may fill a reply; set it lower to reject a long aggregate
	// at its header.
	MaxElements int
	// MaxDepth is how deeply aggregates may nest: an aggregate at the top
	// level is depth 1, an aggregate inside it depth 2; scalars do not
	// count. An attribute adds a level to the value it precedes, so a chain
	// of attributes is bounded too. Default 64 (a lock client needs about 3).
	MaxDepth int
	// MaxLineLen is the longest line: simple strings, simple errors and
	// headers, without CRLF. Default 64 KiB.
	MaxLineLen int
	// MaxReplyValues is the most values one reply may hold, at every
	// depth: each scalar, aggregate and attribute counts one, and a map or
	// attribute's key and value count one each. Attributes count whether
	// they are kept or not. Default 1<<15: a lock client's largest reply,
	// CLUSTER SHARDS, holds about 20 values per node, so this fits a
	// cluster of a thousand nodes with room to spare for fragmented slot
	// ranges. A reply at the limit takes about 6 MiB while it is read.
	MaxReplyValues int
	// MaxReplyBytes is the largest reply, in bytes on the wire, headers
	// and attributes included. Default 64 MiB: room for a bulk string of
	// the default MaxBulkLen and as much again.
	MaxReplyBytes int
}

// Defaults of [Limits]. MaxElements defaults to MaxReplyValues.
const (
	DefaultMaxBulkLen     = 32 << 20
	DefaultMaxDepth       = 64
	DefaultMaxLineLen     = 64 << 10
	DefaultMaxReplyValues = 1 << 15
	DefaultMaxReplyBytes  = 64 << 20
)

func (l Limits) withDefaults() Limits {
	if l.MaxBulkLen <= 0 {
		l.MaxBulkLen = DefaultMaxBulkLen
	}
	if l.MaxReplyValues <= 0 {
		l.MaxReplyValues = DefaultMaxReplyValues
	}
	if l.MaxElements <= 0 {
		l.MaxElements = l.MaxReplyValues
	}
	// Map lengths are doubled to count keys and values: keep that in range.
	l.MaxElements = min(l.MaxElements, math.MaxInt/2)
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	if l.MaxLineLen <= 0 {
		l.MaxLineLen = DefaultMaxLineLen
	}
	if l.MaxReplyBytes <= 0 {
		l.MaxReplyBytes = DefaultMaxReplyBytes
	}
	return l
}

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

	arena []byte    // string contents of the current reply
	line  []byte    // a line longer than br's buffer, gathered
	stack elemStack // elements of the aggregates being read
	slab  slab      // finished element lists of the current reply
	err   error     // sticky protocol or I/O error

	// What is left of the current reply's MaxReplyValues and MaxReplyBytes.
	valuesLeft, bytesLeft int
}

// NewReader returns a Reader that reads from r with the given limits (zero
// fields take their defaults).
func NewReader(r io.Reader, lim Limits) *Reader {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 4096)
	}
	lim = lim.withDefaults()
	return &Reader{br: br, lim: lim, slab: slab{most: lim.MaxReplyValues}}
}

// Shrink drops the memory the Reader keeps between replies for the next
// ones (string arena, element storage) when it holds more than a small
// reply needs: for a Reader that will now read only small replies for a
// long time, such as a held lock's. The next large reply allocates afresh.
// The value of the last Read stays valid until the next Read, as always.
// It must not be called during Read.
func (r *Reader) Shrink() {
	r.line = nil
	if cap(r.arena) > shrinkBytes {
		r.arena = nil
	}
	if r.stack.room > shrinkValues {
		r.stack = elemStack{}
	}
	if r.slab.kept() > shrinkValues {
		r.slab = slab{most: r.lim.MaxReplyValues}
	}
}

// Shrink keeps storage for replies up to these sizes: a pub/sub message,
// a confirmation, a PONG.
const (
	shrinkValues = 8
	shrinkBytes  = 256
)

// Retained returns how many bytes the Reader keeps between replies: its
// read buffer (the bufio.Reader given to NewReader, or the 4 KiB one it
// made), the string arena and element storage it reuses for the next
// reply, and the storage of a line longer than the read buffer (see
// Shrink). It tells what a long-lived Reader, such as a held lock's,
// costs in memory.
func (r *Reader) Retained() int {
	values := r.stack.room + r.slab.kept()
	return r.br.Size() + cap(r.arena) + cap(r.line) + values*int(unsafe.Sizeof(Value{}))
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
	r.slab.reset() // the stack is empty after every reply read whole
	r.valuesLeft, r.bytesLeft = r.lim.MaxReplyValues, r.lim.MaxReplyBytes
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
	if err := r.spend(n); err != nil {
		return nil, err
	}
	return line[:n-2], nil
}

// spend charges n bytes of wire to the reply.
func (r *Reader) spend(n int) error {
	if n > r.bytesLeft {
		return r.tooManyBytes()
	}
	r.bytesLeft -= n
	return nil
}

// tooManyBytes reports a reply beyond MaxReplyBytes.
func (r *Reader) tooManyBytes() error {
	return limitErr("MaxReplyBytes", "reply exceeds limit of "+strconv.Itoa(r.lim.MaxReplyBytes)+" bytes")
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

// typeChunk stands for a chunk of a streamed string, which is no value, in
// the messages of Reader.length.
const typeChunk Type = ';'

// lengthOf names what a length header of type t gives the length of.
func (t Type) lengthOf() string {
	if t == typeChunk {
		return "chunk"
	}
	return t.String()
}

// length parses a length header: digits without sign or leading zeros, the
// RESP2 null length "-1" (returned as -1) or the RESP3 streamed length "?"
// (returned as -2), for a value of type t (typeChunk for a chunk of a
// streamed string). A length beyond max exceeds the Limits field limit.
func (r *Reader) length(b []byte, t Type, max int, limit string) (int, error) {
	switch string(b) {
	case "?":
		return -2, nil
	case "-1":
		return -1, nil
	}
	n, ok := parseInt(b)
	if !ok || b[0] == '-' || b[0] == '+' {
		return 0, protoErr("invalid " + t.lengthOf() + " length " + strconv.Quote(string(b)))
	}
	if n > int64(max) {
		return 0, limitErr(limit, t.lengthOf()+" length "+strconv.FormatInt(n, 10)+" exceeds limit "+strconv.Itoa(max))
	}
	return int(n), nil
}

// keep copies b into the arena so it survives later reads.
func (r *Reader) keep(b []byte) []byte {
	start := len(r.arena)
	if cap(r.arena)-start < len(b) {
		r.growArena(len(b), math.MaxInt)
	}
	r.arena = append(r.arena, b...)
	return r.arena[start:len(r.arena):len(r.arena)]
}

// growArena makes room for need more bytes in the arena, doubling it unless
// want, the most the current string may still need, is less. Doubling
// rather than letting append grow large slices by 1.25x makes the arena's
// allocations add up to about 4x what it holds instead of 6x, and never
// more than twice what has arrived. Strings already read keep the old array.
func (r *Reader) growArena(need, want int) {
	r.arena = slices.Grow(r.arena, max(need, min(want, cap(r.arena))))
}

// readBulk reads n bytes and the CRLF after them into the arena, growing it
// in steps as the bytes arrive, so that an announced length costs memory
// only as its bytes arrive: never more than twice what has.
func (r *Reader) readBulk(n int) ([]byte, error) {
	if err := r.spend(n); err != nil {
		return nil, err
	}
	if err := r.spend(2); err != nil { // CRLF, apart: n may be MaxInt
		return nil, err
	}
	start := len(r.arena)
	for got := 0; got < n; {
		step := min(n-got, bulkChunk)
		if cap(r.arena)-len(r.arena) < step {
			r.growArena(step, n-got)
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

// readValue reads one value at the given depth, with the attributes that
// precede it. top is true for the first byte of a reply, where a clean EOF
// is io.EOF rather than unexpected.
func (r *Reader) readValue(depth int, top bool) (Value, error) {
	// The pairs of kept attributes wait on the stack from here, so that a
	// chain of attributes is gathered into one list, copied once.
	attrs := r.stack.n
	for {
		line, err := r.readLine()
		if err != nil {
			if !top {
				err = unexpected(err)
			}
			return Value{}, err
		}
		top = false
		if len(line) == 0 {
			return Value{}, protoErr("empty line")
		}
		if r.valuesLeft == 0 {
			return Value{}, r.tooManyValues()
		}
		r.valuesLeft--
		t, body := Type(line[0]), line[1:]
		if t != TypeAttribute {
			v := Value{Type: t}
			if err := r.readBody(&v, body, depth); err != nil {
				return Value{}, err
			}
			if r.stack.n > attrs {
				v.Attrs = r.finish(attrs)
			}
			return v, nil
		}
		n, err := r.aggregateHeader(t, body, depth, 2)
		if err != nil {
			return Value{}, err
		}
		if n < 0 {
			return Value{}, protoErr("invalid " + t.String() + " length " + strconv.Quote(string(body)))
		}
		mark := r.mark()
		if err := r.readElems(n, 2, depth); err != nil {
			return Value{}, err
		}
		if !r.KeepAttributes {
			// Nothing refers to the dropped pairs: reuse their memory, so
			// attributes cost nothing to skip.
			r.release(mark)
		}
		// An attribute describes the value that follows it, a level deeper.
		depth++
	}
}

// tooManyValues reports a reply beyond MaxReplyValues.
func (r *Reader) tooManyValues() error {
	return limitErr("MaxReplyValues", "reply exceeds limit of "+strconv.Itoa(r.lim.MaxReplyValues)+" values")
}

// aggregateHeader checks the header of an aggregate of type t at the given
// depth, with per values to each of its elements (2 for a map), and returns
// its length: -1 for a RESP2 null, -2 for a streamed aggregate. An
// aggregate whose elements cannot fit in what is left of the reply is
// refused here, before any is read.
func (r *Reader) aggregateHeader(t Type, body []byte, depth, per int) (int, error) {
	n, err := r.length(body, t, r.lim.MaxElements, "MaxElements")
	if err != nil || n == -1 {
		return n, err
	}
	if depth > r.lim.MaxDepth {
		return 0, limitErr("MaxDepth", "nesting exceeds limit "+strconv.Itoa(r.lim.MaxDepth))
	}
	if n*per > r.valuesLeft {
		return 0, limitErr("MaxReplyValues", t.String()+" of "+strconv.Itoa(n*per)+" elements exceeds the reply's limit of "+
			strconv.Itoa(r.lim.MaxReplyValues)+" values")
	}
	return n, nil
}

// readBody reads the rest of v, a value of any type but attribute, whose
// header line held body. Filling in v rather than returning a Value spares
// copying one.
func (r *Reader) readBody(v *Value, body []byte, depth int) error {
	switch t := v.Type; t {
	case TypeSimpleString, TypeError:
		v.Str = r.keep(body)
	case TypeInteger:
		n, ok := parseInt(body)
		if !ok {
			return protoErr("invalid integer " + strconv.Quote(string(body)))
		}
		v.Int = n
	case TypeNull:
		if len(body) != 0 {
			return protoErr("invalid null")
		}
	case TypeBoolean:
		switch string(body) {
		case "t":
			v.Int = 1
		case "f":
		default:
			return protoErr("invalid boolean " + strconv.Quote(string(body)))
		}
	case TypeDouble:
		f, ok := parseDouble(body)
		if !ok {
			return protoErr("invalid double " + strconv.Quote(string(body)))
		}
		v.Float = f
	case TypeBigNumber:
		if !validBigNumber(body) {
			return protoErr("invalid big number " + strconv.Quote(string(body)))
		}
		v.Str = r.keep(body)
	case TypeBulkString, TypeBulkError, TypeVerbatim:
		n, err := r.length(body, t, r.lim.MaxBulkLen, "MaxBulkLen")
		if err != nil {
			return err
		}
		switch {
		case n == -1 && t == TypeBulkString:
			v.Type = TypeNull
			return nil
		case n == -2 && t == TypeBulkString:
			v.Str, err = r.readStreamedString()
			return err
		case n < 0:
			return protoErr("invalid " + t.String() + " length " + strconv.Quote(string(body)))
		}
		if v.Str, err = r.readBulk(n); err != nil {
			return err
		}
		if t == TypeVerbatim {
			if len(v.Str) < 4 || v.Str[3] != ':' {
				return protoErr("verbatim string without format")
			}
			copy(v.Format[:], v.Str[:3])
			v.Str = v.Str[4:]
		}
	case TypeArray, TypeSet, TypePush, TypeMap:
		per := 1
		if t == TypeMap {
			per = 2
		}
		n, err := r.aggregateHeader(t, body, depth, per)
		if err != nil {
			return err
		}
		switch {
		case n == -1 && t == TypeArray:
			v.Type = TypeNull
			return nil
		case n == -1, n == -2 && t == TypePush:
			return protoErr("invalid " + t.String() + " length " + strconv.Quote(string(body)))
		}
		base := r.stack.n
		if err := r.readElems(n, per, depth); err != nil {
			return err
		}
		v.Elems = r.finish(base)
	default:
		return protoErr("unknown type byte " + strconv.QuoteRune(rune(t)))
	}
	return nil
}

// readElems reads n values (n*per for maps; n == -2 means streamed, ended
// by ".") onto the stack.
func (r *Reader) readElems(n, per, depth int) error {
	for i := 0; n < 0 || i < n*per; i++ {
		if n < 0 {
			if b, err := r.br.Peek(1); err == nil && b[0] == '.' {
				line, err := r.readLine()
				if err != nil {
					return unexpected(err)
				}
				if len(line) != 1 {
					return protoErr("invalid end of streamed aggregate")
				}
				if i%per != 0 {
					return protoErr("streamed map ended after a key")
				}
				return nil
			}
			// Checked after the end marker, so that exactly MaxElements
			// elements are accepted.
			if i >= r.lim.MaxElements*per {
				return limitErr("MaxElements", "streamed aggregate exceeds limit "+strconv.Itoa(r.lim.MaxElements))
			}
		}
		e, err := r.readValue(depth+1, false)
		if err != nil {
			return err
		}
		r.stack.push(&e)
	}
	return nil
}

// finish moves the values on the stack from base up into one list of the
// slab, and returns it.
func (r *Reader) finish(base int) []Value {
	list := r.slab.alloc(r.stack.n-base, r.valuesLeft)
	r.stack.popTo(list, base)
	return list
}

// readMark is where the reader's memory stood at some point of a reply.
type readMark struct {
	arena, stack int
	slab         slabMark
}

func (r *Reader) mark() readMark {
	return readMark{arena: len(r.arena), stack: r.stack.n, slab: r.slab.mark()}
}

// release forgets everything read since m, to reuse its memory.
func (r *Reader) release(m readMark) {
	r.arena = r.arena[:m.arena]
	r.stack.popTo(nil, m.stack)
	r.slab.release(m.slab)
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
		n, err := r.length(line[1:], typeChunk, r.lim.MaxBulkLen, "MaxBulkLen")
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
