package resp

// Where a Reader keeps the values of a reply. Nothing is reserved from an
// announced length: storage grows as values arrive, into arrays that never
// move, so growing copies nothing. Each value is stored twice at most, on
// the stack while its aggregate is read, then in the slab when it is done.
// Everything is kept for the next reply, so that a reader warmed up by a
// reply reads the same shape again without allocating; and however the
// shapes of replies vary, what a Reader ever allocates for values stays
// within a few times what one reply at MaxReplyValues needs.

// stackChunk is how many values a chunk of the stack holds.
const stackChunk = 256

// elemStack holds the elements of the aggregates being read, innermost
// last, and the pairs of kept attributes waiting for their value. Value k
// is in chunks[k/stackChunk] at k%stackChunk. Only the first chunk grows,
// by doubling, so that a small reply takes little memory; the others are
// allocated whole.
type elemStack struct {
	chunks [][]Value
	n      int // values held
	room   int // values the chunks can hold
}

func (s *elemStack) push(v *Value) {
	if s.n == s.room {
		s.grow()
	}
	s.chunks[s.n/stackChunk][s.n%stackChunk] = *v
	s.n++
}

// grow makes room for one more value. Kept out of push, so that push is
// inlined.
//
//go:noinline
func (s *elemStack) grow() {
	i := s.n / stackChunk
	if i == len(s.chunks) {
		s.chunks = append(s.chunks, nil)
	}
	c := s.chunks[i]
	size := stackChunk
	if i == 0 {
		size = min(max(2*len(c), 8), stackChunk)
	}
	s.chunks[i] = make([]Value, size)
	copy(s.chunks[i], c)
	s.room += size - len(c)
}

// popTo moves the values from base up into dst, which must have room for
// them all, and pops them. A nil dst drops them.
func (s *elemStack) popTo(dst []Value, base int) {
	if i := base / stackChunk; i == (s.n-1)/stackChunk && base < s.n {
		// All in one chunk, as in most replies.
		c := s.chunks[i][base%stackChunk : (s.n-1)%stackChunk+1]
		copy(dst, c)
		clear(c)
		s.n = base
		return
	}
	for k := base; k < s.n; {
		i, j := k/stackChunk, k%stackChunk
		c := s.chunks[i][j:min(len(s.chunks[i]), j+s.n-k)]
		if dst != nil {
			copy(dst[k-base:], c)
		}
		clear(c) // the stack keeps no reference to what the reply held
		k += len(c)
	}
	s.n = base
}

const (
	// firstSlabChunk and slabChunk are the sizes of the slab's first chunk
	// and, doubling from it, its largest; a small reply takes little memory.
	firstSlabChunk = 4
	slabChunk      = 1024
	// longList is the longest list carved from the chunks. A longer one is
	// carved from the slab's long array instead, so that the space left at
	// the end of chunks, where a list did not fit, stays under an eighth.
	longList = slabChunk / 8
)

// slab holds the finished element lists of the current reply, carved in
// turn from chunks or, when long, from a long array. Arrays already carved
// from are never moved, so earlier lists stay valid as the slab grows. A
// list is a slice with no spare capacity, so appending to it cannot write
// into the next one.
type slab struct {
	chunks [][]Value
	ci     int // chunk carved from
	off    int // values of chunks[ci] already carved

	// The long array grows by doubling, up to most values, so that replies
	// of any shapes, one after the other, cause few allocations: once it
	// holds most, no reply ever needs another.
	long    []Value
	longOff int // values of long already carved
	longs   int // long arrays made so far
	most    int // MaxReplyValues
}

// slabMark is where a slab stood at some point of a reply.
type slabMark struct{ ci, off, longOff, longs int }

func (s *slab) reset() { s.ci, s.off, s.longOff = 0, 0, 0 }

func (s *slab) mark() slabMark { return slabMark{s.ci, s.off, s.longOff, s.longs} }

// release gives back every list carved since m, to be carved again. A long
// array made since then holds none of the lists from before: it is simply
// kept.
func (s *slab) release(m slabMark) {
	s.ci, s.off = m.ci, m.off
	if s.longs == m.longs {
		s.longOff = m.longOff
	}
}

// alloc returns a list of n values. At most spare more values will be
// asked for in this reply: no chunk is made larger than they can fill.
func (s *slab) alloc(n, spare int) []Value {
	if n == 0 {
		return nil
	}
	if n > longList {
		return s.allocLong(n)
	}
	if len(s.chunks) == 0 {
		s.chunks = append(s.chunks, make([]Value, min(firstSlabChunk, n+spare)))
	}
	if n > len(s.chunks[s.ci])-s.off {
		s.ci++
		s.off = 0
		if s.ci == len(s.chunks) {
			s.chunks = append(s.chunks, nil)
		}
		if len(s.chunks[s.ci]) < n {
			s.chunks[s.ci] = make([]Value, max(n, min(slabChunk, firstSlabChunk<<min(s.ci, 16), n+spare)))
		}
	}
	l := s.chunks[s.ci][s.off : s.off+n : s.off+n]
	s.off += n
	return l
}

// allocLong returns a list of n values from the long array.
func (s *slab) allocLong(n int) []Value {
	if n > len(s.long)-s.longOff {
		s.long = make([]Value, max(n, min(2*len(s.long), s.most)))
		s.longOff = 0
		s.longs++
	}
	l := s.long[s.longOff : s.longOff+n : s.longOff+n]
	s.longOff += n
	return l
}

// kept returns how many values the slab's storage holds.
func (s *slab) kept() int {
	n := len(s.long)
	for _, c := range s.chunks {
		n += len(c)
	}
	return n
}
