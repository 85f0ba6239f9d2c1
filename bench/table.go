package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// result is one measurement, printed as one benchstat line.
type result struct {
	name   string  // benchstat name without "Benchmark", e.g. "Cycle/bsm-redislock"
	n      int     // iterations or samples
	ns     float64 // ns/op
	bytes  float64 // B/op; negative when not measured
	allocs float64 // allocs/op; negative when not measured
	extra  []metric
}

// metric is an extra benchstat column, e.g. {"p99-ns", 1234}.
type metric struct {
	unit  string
	value float64
}

func fromBenchmark(name string, r testing.BenchmarkResult) result {
	return result{name: name, n: r.N, ns: float64(r.T.Nanoseconds()) / float64(max(r.N, 1)),
		bytes: float64(r.AllocedBytesPerOp()), allocs: float64(r.AllocsPerOp())}
}

func (r result) metric(unit string) float64 {
	for _, m := range r.extra {
		if m.unit == unit {
			return m.value
		}
	}
	return math.NaN()
}

// benchstatLine renders r as `go test -bench` does.
func (r result) benchstatLine(procs int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Benchmark%s-%d\t%8d\t%s ns/op", r.name, procs, r.n, num(r.ns))
	if r.bytes >= 0 {
		fmt.Fprintf(&b, "\t%s B/op\t%s allocs/op", num(r.bytes), num(r.allocs))
	}
	for _, m := range r.extra {
		fmt.Fprintf(&b, "\t%s %s", num(m.value), m.unit)
	}
	return b.String()
}

func num(f float64) string {
	if f == math.Trunc(f) || f >= 100 {
		return strconv.FormatFloat(math.Round(f), 'f', -1, 64)
	}
	return strconv.FormatFloat(f, 'f', 2, 64)
}

// results holds every measurement of a run, repeats included.
type results struct {
	all []result
}

func (rs *results) add(r ...result) { rs.all = append(rs.all, r...) }

// median returns, for the named result, a result whose every figure is the
// median over the repeats, and whether there was any.
func (rs *results) median(name string) (result, bool) {
	var same []result
	for _, r := range rs.all {
		if r.name == name {
			same = append(same, r)
		}
	}
	if len(same) == 0 {
		return result{}, false
	}
	m := same[0]
	m.ns = med(same, func(r result) float64 { return r.ns })
	m.bytes = med(same, func(r result) float64 { return r.bytes })
	m.allocs = med(same, func(r result) float64 { return r.allocs })
	m.extra = slices.Clone(m.extra)
	for i := range m.extra {
		unit := m.extra[i].unit
		m.extra[i].value = med(same, func(r result) float64 { return r.metric(unit) })
	}
	return m, true
}

// best returns the lowest ns/op of the named result over its samples: the
// figure least disturbed by other load on the machine.
func (rs *results) best(name string) float64 {
	b := math.NaN()
	for _, r := range rs.all {
		if r.name == name && !(r.ns >= b) {
			b = r.ns
		}
	}
	return b
}

func med(rs []result, f func(result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// table is a markdown table. Column 0 is aligned left and the others
// right, unless align says otherwise: one 'l' or 'r' per column.
type table struct {
	head  []string
	rows  [][]string
	align string
}

func (t *table) right(i int) bool {
	if i < len(t.align) {
		return t.align[i] == 'r'
	}
	return i > 0
}

func (t *table) row(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(w io.Writer) {
	width := make([]int, len(t.head))
	for i, h := range t.head {
		width[i] = utf8.RuneCountInString(h)
	}
	for _, r := range t.rows {
		for i, c := range r {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	line := func(cells []string, right func(int) bool) {
		var b strings.Builder
		b.WriteString("|")
		for i := range t.head {
			c := ""
			if i < len(cells) {
				c = cells[i]
			}
			if right(i) {
				fmt.Fprintf(&b, " %*s |", width[i], c)
			} else {
				fmt.Fprintf(&b, " %-*s |", width[i], c)
			}
		}
		fmt.Fprintln(w, b.String())
	}
	line(t.head, func(int) bool { return false })
	sep := make([]string, len(t.head))
	for i := range sep {
		if t.right(i) {
			sep[i] = strings.Repeat("-", width[i]-1) + ":"
		} else {
			sep[i] = strings.Repeat("-", width[i])
		}
	}
	line(sep, func(int) bool { return false })
	for _, r := range t.rows {
		line(r, t.right)
	}
	fmt.Fprintln(w)
}

// dur renders nanoseconds for humans: 850ns, 41.2µs, 12.3ms, 4.98s.
func dur(ns float64) string {
	if math.IsNaN(ns) {
		return "n/a"
	}
	d := time.Duration(ns)
	switch {
	case d < time.Microsecond:
		return strconv.FormatFloat(ns, 'f', 0, 64) + "ns"
	case d < time.Millisecond:
		return strconv.FormatFloat(ns/1e3, 'f', 1, 64) + "µs"
	case d < time.Second:
		return strconv.FormatFloat(ns/1e6, 'f', 1, 64) + "ms"
	}
	return strconv.FormatFloat(ns/1e9, 'f', 2, 64) + "s"
}

// percentile returns the p-th percentile (0..100) of sorted samples,
// nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
