package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/pubsublock/pubsublock"
)

// pyCycle times portalocker.RedisLock acquire and release on one shared
// redis connection, as its docs suggest, and prints them as JSON.
const pyCycle = `
import json, sys, time
import portalocker, redis
host, port, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
conn = redis.Redis(host=host, port=port)
acq, rel = [], []
for i in range(runs + 1):
    lock = portalocker.RedisLock('bench-python', connection=conn)
    t0 = time.perf_counter()
    lock.acquire()
    t1 = time.perf_counter()
    lock.release()
    t2 = time.perf_counter()
    if i > 0:  # the first run warms up
        acq.append(t1 - t0)
        rel.append(t2 - t1)
print(json.dumps({"version": portalocker.__version__, "acquire": acq, "release": rel}))
`

// pyResult is what pyCycle prints.
type pyResult struct {
	Version          string
	Acquire, Release []float64
}

var pySkipped string

func pythonRuns(cfg *config) int {
	if cfg.short {
		return 3
	}
	return 20
}

func runPython(cfg *config, rs *results) {
	if !lookPython() || exec.Command(python, "-c", "import portalocker, redis").Run() != nil {
		pySkipped = "skipped: python3-portalocker not installed (sudo apt-get install -y python3-portalocker python3-redis)"
		return
	}
	host, port, _ := net.SplitHostPort(cfg.srv.addr)
	runs := pythonRuns(cfg)
	out, err := exec.Command(python, "-c", pyCycle, host, port, fmt.Sprint(runs)).Output()
	if err != nil {
		pySkipped = fmt.Sprintf("failed: %v", err)
		if ee, ok := err.(*exec.ExitError); ok {
			pySkipped += ": " + lastLine(ee.Stderr)
		}
		return
	}
	var py pyResult
	if err := json.Unmarshal(out, &py); err != nil {
		pySkipped = fmt.Sprintf("failed: %v in %q", err, out)
		return
	}
	pyVersion = py.Version
	rs.add(phaseResults("Python/portalocker-"+py.Version, secs(py.Acquire), secs(py.Release))...)

	// The same loop in Go: a new Lock per cycle on a shared Client.
	cl, err := pubsublock.NewClient(pubsublock.ClientConfig{Addr: cfg.srv.addr})
	if err != nil {
		fmt.Fprintln(cfg.log, "python: pubsublock:", err)
		return
	}
	defer cl.Close()
	var acq, rel []time.Duration
	ctx := context.Background()
	for i := range runs + 1 {
		l, err := pubsublock.New("bench-python-go", pubsublock.Config{Client: cl})
		if err != nil {
			fmt.Fprintln(cfg.log, "python: pubsublock:", err)
			return
		}
		t0 := time.Now()
		if err := l.Acquire(ctx); err != nil {
			fmt.Fprintln(cfg.log, "python: pubsublock:", err)
			return
		}
		t1 := time.Now()
		if err := l.Release(ctx); err != nil {
			fmt.Fprintln(cfg.log, "python: pubsublock:", err)
			return
		}
		t2 := time.Now()
		if i > 0 {
			acq, rel = append(acq, t1.Sub(t0)), append(rel, t2.Sub(t1))
		}
	}
	rs.add(phaseResults("Python/pubsublock", acq, rel)...)
}

var pyVersion string

func secs(fs []float64) []time.Duration {
	out := make([]time.Duration, len(fs))
	for i, f := range fs {
		out[i] = time.Duration(f * 1e9)
	}
	return out
}

// phaseResults turns per-cycle acquire and release times into three
// results: acquire, release and the whole cycle, each with its p50.
func phaseResults(name string, acq, rel []time.Duration) []result {
	cycle := make([]time.Duration, len(acq))
	for i := range acq {
		cycle[i] = acq[i] + rel[i]
	}
	one := func(phase string, d []time.Duration) result {
		d = slices.Clone(d)
		slices.Sort(d)
		var sum time.Duration
		for _, x := range d {
			sum += x
		}
		return result{name: name + "/" + phase, n: len(d), ns: float64(sum) / float64(max(len(d), 1)),
			bytes: -1, allocs: -1, extra: []metric{{"p50-ns", float64(percentile(d, 50))}}}
	}
	return []result{one("acquire", acq), one("release", rel), one("cycle", cycle)}
}

func printPython(cfg *config, rs *results) {
	w := cfg.out
	fmt.Fprintln(w, "## 6. Python portalocker RedisLock cycle")
	fmt.Fprintln(w)
	if pySkipped != "" {
		fmt.Fprintln(w, pySkipped)
		fmt.Fprintln(w)
		return
	}
	fmt.Fprintf(w, "%d cycles of a new lock, acquire, release on one shared connection (Python: one redis.Redis;\n", pythonRuns(cfg))
	fmt.Fprintln(w, "Go: one pubsublock.Client), after one warm-up cycle, timed inside each language.")
	fmt.Fprintln(w)
	t := table{head: []string{"lock", "acquire p50", "release p50", "cycle p50", "cycle mean"}}
	for _, lib := range []string{"portalocker-" + pyVersion, "pubsublock"} {
		a, okA := rs.median("Python/" + lib + "/acquire")
		r, okR := rs.median("Python/" + lib + "/release")
		c, okC := rs.median("Python/" + lib + "/cycle")
		label := lib
		if strings.HasPrefix(lib, "portalocker") {
			label = "portalocker " + pyVersion + " (Python " + pythonVersion() + ")"
		}
		if !okA || !okR || !okC {
			t.row(label, "failed")
			continue
		}
		t.row(label, dur(a.metric("p50-ns")), dur(r.metric("p50-ns")), dur(c.metric("p50-ns")), dur(c.ns))
	}
	t.write(w)
}

func pythonVersion() string {
	out, err := exec.Command(python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}
