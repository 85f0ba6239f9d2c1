package resp

// Where a Reader keeps the values of a reply. Both structures grow in chunks
// that never move, so growing copies nothing and allocates little more than
// is used: each value is stored twice at most, once on the stack while its
// aggregate is read and once in the slab when it is done. Both are kept
// for the next reply, so that a reader warmed up by a reply reads the same
// shape again without allocating.

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
}

func (s *elemStack) push(v Value) {
	i, j := s.n/stackChunk, s.n%stackChunk
	if i == len(s.chunks) {
		s.chunks = append(s.chunks, nil)
	}
	c := s.chunks[i]
	if j == len(c) {
		size := stackChunk
		if i == 0 {
			size = min(max(2*len(c), 8), stackChunk)
		}
		c = make([]Value, size)
		copy(c, s.chunks[i])
		s.chunks[i] = c
	}
	c[j] = v
	s.n++
}

// popTo moves the values from base up into dst, which must have room for
// them all, and pops them. A nil dst drops them.
func (s *elemStack) popTo(dst []Value, base int) {
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

func (s *elemStack) reset() { s.popTo(nil, 0) }

const (
	// firstSlabChunk and slabChunk are the sizes of the slab's first chunk
	// and, doubling from it, its largest; a small reply takes little memory.
	firstSlabChunk = 16
	slabChunk      = 1024
	// bigList is the longest list that starts a new chunk when it does not
	// fit in the current one. A longer one gets an array of its own, so
	// that the space left at the end of chunks stays under an eighth.
	bigList = slabChunk / 8
)

// slab holds the finished element lists of the current reply, each carved
// from a chunk in turn, or in an array of its own if long. A list is a
// slice with no spare capacity, so appending to it cannot write into the
// next one.
type slab struct {
	chunks [][]Value
	ci     int // chunk carved from
	off    int // values of chunks[ci] already carved
	bigs   [][]Value
	nbig   int // bigs in use
}

// slabMark is where a slab stood at some point of a reply.
type slabMark struct{ ci, off, nbig int }

func (s *slab) reset() { s.ci, s.off, s.nbig = 0, 0, 0 }

func (s *slab) mark() slabMark { return slabMark{s.ci, s.off, s.nbig} }

// release gives back every list carved since m, to be carved again.
func (s *slab) release(m slabMark) { s.ci, s.off, s.nbig = m.ci, m.off, m.nbig }

// alloc returns a list of n values. At most spare more values will be
// asked for in this reply: no chunk is made larger than they can fill.
func (s *slab) alloc(n, spare int) []Value {
	if n == 0 {
		return nil
	}
	if len(s.chunks) == 0 {
		s.chunks = append(s.chunks, make([]Value, min(firstSlabChunk, n+spare)))
	}
	if n > len(s.chunks[s.ci])-s.off {
		if n > bigList {
			return s.big(n)
		}
		s.ci++
		s.off = 0
		size := max(n, min(slabChunk, firstSlabChunk<<min(s.ci, 16), n+spare))
		if s.ci == len(s.chunks) {
			s.chunks = append(s.chunks, nil)
		}
		if len(s.chunks[s.ci]) < n {
			s.chunks[s.ci] = make([]Value, size)
		}
	}
	l := s.chunks[s.ci][s.off : s.off+n : s.off+n]
	s.off += n
	return l
}

// big returns a list of n values in an array of its own.
func (s *slab) big(n int) []Value {
	if s.nbig == len(s.bigs) {
		s.bigs = append(s.bigs, nil)
	}
	if cap(s.bigs[s.nbig]) < n {
		s.bigs[s.nbig] = make([]Value, n)
	}
	l := s.bigs[s.nbig][:n:n]
	s.nbig++
	return l
}
