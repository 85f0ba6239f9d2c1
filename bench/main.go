// Command bench compares pubsublock with its peers on one redis-server that
// it starts itself: the RESP codec, the uncontended lock cycle, hand-off
// latency under contention, hand-off after a holder is SIGKILLed, and
// Python portalocker's cycle. It prints markdown tables and benchstat
// lines.
//
//	cd bench && go run .            # full run, about two minutes
//	cd bench && go run . -short     # quick run, as the tests do
//	cd bench && go run . -count 5 -only cycle,handoff
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// sections are the parts of a run, in order.
var sections = []string{"codec", "cycle", "handoff", "xhandoff", "crash", "python"}

// config is a run's settings and where it writes.
type config struct {
	short     bool
	count     int
	benchtime time.Duration
	only      []string
	handoffs  int   // hand-offs measured per peer and waiter count
	waiters   []int // waiter counts for the hand-off section
	redis     string
	peers     []peer     // the locks compared (-peers)
	rows      []cycleRow // the cycle rows of those locks, and the floors
	out       io.Writer  // the report
	log       io.Writer  // progress and failures
	srv       *server
}

func (c *config) want(section string) bool { return slices.Contains(c.only, section) }

func main() {
	if os.Getenv(holderEnv) != "" {
		os.Exit(holderMain())
	}
	if os.Getenv(contenderEnv) != "" {
		os.Exit(contenderMain())
	}
	testing.Init()
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// run parses args and runs the selected sections against a new server.
func run(args []string, out, log io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(log)
	cfg := &config{out: out, log: log}
	fs.BoolVar(&cfg.short, "short", false, "quick run: short benchtime, few hand-offs, 1s TTLs in the crash test")
	fs.IntVar(&cfg.count, "count", 1, "run every measurement this many times (tables show the median)")
	fs.DurationVar(&cfg.benchtime, "benchtime", 0, "target time of each ns/op benchmark (default 1s, 30ms with -short)")
	only := fs.String("only", strings.Join(sections, ","), "comma-separated sections to run: "+strings.Join(sections, ","))
	fs.IntVar(&cfg.handoffs, "handoffs", 0, "hand-offs measured per peer and waiter count (default 100, 6 with -short)")
	waiters := fs.String("waiters", "4,16", "waiter counts for the hand-off section")
	fs.StringVar(&cfg.redis, "redis-server", "redis-server", "redis-server binary")
	var names []string
	for _, p := range lockPeers {
		names = append(names, p.name)
	}
	peers := fs.String("peers", strings.Join(names, ","), "comma-separated locks to compare")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for s := range strings.SplitSeq(*only, ",") {
		if s = strings.TrimSpace(s); !slices.Contains(sections, s) {
			return fmt.Errorf("-only: unknown section %q (want %s)", s, strings.Join(sections, ","))
		}
		cfg.only = append(cfg.only, s)
	}
	for name := range strings.SplitSeq(*peers, ",") {
		p, ok := findPeer(strings.TrimSpace(name))
		if !ok {
			return fmt.Errorf("-peers: unknown lock %q (want %s)", name, strings.Join(names, ","))
		}
		cfg.peers = append(cfg.peers, p)
	}
	for _, row := range cycleRows {
		keep := strings.Contains(row.name, "ping")
		for _, p := range cfg.peers {
			keep = keep || row.name == p.name || strings.HasPrefix(row.name, p.name+"-")
		}
		if keep {
			cfg.rows = append(cfg.rows, row)
		}
	}
	for w := range strings.SplitSeq(*waiters, ",") {
		var n int
		if _, err := fmt.Sscan(w, &n); err != nil || n < 1 {
			return fmt.Errorf("-waiters: bad count %q", w)
		}
		cfg.waiters = append(cfg.waiters, n)
	}
	if cfg.count < 1 {
		return errors.New("-count must be at least 1")
	}
	if cfg.benchtime == 0 {
		cfg.benchtime = time.Second
		if cfg.short {
			cfg.benchtime = 30 * time.Millisecond
		}
	}
	if cfg.handoffs == 0 {
		cfg.handoffs = 100
		if cfg.short {
			cfg.handoffs = 6
		}
	}
	setBenchtime(cfg.benchtime)

	srv, err := startServer(cfg.redis)
	if err != nil {
		return err
	}
	defer srv.stop()
	cfg.srv = srv
	stopOnSignal := make(chan os.Signal, 1)
	signal.Notify(stopOnSignal, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(stopOnSignal)
	go func() {
		if _, ok := <-stopOnSignal; ok {
			srv.stop()
			os.Exit(2)
		}
	}()

	printMachine(cfg)
	rs := &results{}
	for rep := range cfg.count {
		if cfg.count > 1 {
			fmt.Fprintf(log, "repeat %d/%d\n", rep+1, cfg.count)
		}
		for _, s := range sections {
			if !cfg.want(s) {
				continue
			}
			start := time.Now()
			fmt.Fprintf(log, "running %s...\n", s)
			switch s {
			case "codec":
				runCodec(cfg, rs)
			case "cycle":
				runCycle(cfg, rs)
			case "handoff":
				runHandoff(cfg, rs)
			case "xhandoff":
				runXHandoff(cfg, rs)
			case "crash":
				runCrash(cfg, rs)
			case "python":
				runPython(cfg, rs)
			}
			fmt.Fprintf(log, "%s done in %v\n", s, time.Since(start).Round(time.Millisecond))
		}
	}
	for _, s := range sections {
		if !cfg.want(s) {
			continue
		}
		switch s {
		case "codec":
			printCodec(cfg, rs)
		case "cycle":
			printCycle(cfg, rs)
		case "handoff":
			printHandoff(cfg, rs)
		case "xhandoff":
			printXHandoff(cfg, rs)
		case "crash":
			printCrash(cfg, rs)
		case "python":
			printPython(cfg, rs)
		}
	}
	fmt.Fprintf(out, "Load average at the end: %s. The figures are only as quiet as the machine: compare runs, not single numbers.\n\n", loadAvg())
	fmt.Fprintln(out, "## benchstat")
	fmt.Fprintln(out)
	fmt.Fprintln(out, "```")
	fmt.Fprintf(out, "goos: %s\ngoarch: %s\npkg: github.com/pubsublock/pubsublock/bench\ncpu: %s\n", runtime.GOOS, runtime.GOARCH, cpuModel())
	for _, r := range rs.all {
		fmt.Fprintln(out, r.benchstatLine(runtime.GOMAXPROCS(0)))
	}
	fmt.Fprintln(out, "```")
	return nil
}

func printMachine(cfg *config) {
	w := cfg.out
	fmt.Fprintln(w, "# pubsublock vs its peers")
	fmt.Fprintln(w)
	t := table{head: []string{"machine", ""}, align: "ll"}
	t.row("CPU", cpuModel())
	t.row("cores (NumCPU / GOMAXPROCS)", fmt.Sprintf("%d / %d", runtime.NumCPU(), runtime.GOMAXPROCS(0)))
	t.row("OS", runtime.GOOS+"/"+runtime.GOARCH+" "+kernel())
	t.row("Go", runtime.Version())
	t.row("pubsublock", revision())
	t.row("redis-server", cfg.srv.version+" on "+cfg.srv.addr+" (loopback, --save \"\" --appendonly no)")
	t.row("peers", peerVersions())
	mode := fmt.Sprintf("benchtime %v, count %d, %d hand-offs per row", cfg.benchtime, cfg.count, cfg.handoffs)
	if cfg.short {
		mode = "-short: " + mode
	}
	t.row("run", mode)
	t.row("load average at start", loadAvg())
	t.write(w)
}

var cpuOnce = sync.OnceValue(func() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
})

func cpuModel() string { return cpuOnce() }

// revision is the commit of the working tree the bench runs in, with
// "+changes" when it differs from it, as git tells (the bench builds the
// library from the directory above: see go.mod's replace).
func revision() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown (no git)"
	}
	rev := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		rev += "+changes"
	}
	return "commit " + rev
}

// loadAvg is the 1, 5 and 15 minute load average, from /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return ""
	}
	return "(kernel " + strings.TrimSpace(string(b)) + ")"
}

// peerVersions lists the module versions this binary was built with.
func peerVersions() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	var out []string
	for _, m := range bi.Deps {
		switch m.Path {
		case "github.com/redis/go-redis/v9", "github.com/gomodule/redigo", "github.com/redis/rueidis",
			"github.com/bsm/redislock", "github.com/go-redsync/redsync/v4":
			out = append(out, strings.TrimPrefix(m.Path, "github.com/")+" "+m.Version)
		}
	}
	return strings.Join(out, ", ")
}

// setBenchtime sets the target time of testing.Benchmark, which reads the
// -test.benchtime flag that testing.Init registers.
func setBenchtime(d time.Duration) {
	if f := flag.Lookup("test.benchtime"); f != nil {
		_ = f.Value.Set(d.String())
	}
}

// benchFailure records why the last testing.Benchmark failed: its own
// report of b.Fatal is not printed outside go test.
var (
	failMu      sync.Mutex
	benchFailed string
)

func fatal(b *testing.B, args ...any) {
	failMu.Lock()
	benchFailed = fmt.Sprint(args...)
	failMu.Unlock()
	b.FailNow()
}

func lastFailure() string {
	failMu.Lock()
	defer failMu.Unlock()
	s := benchFailed
	benchFailed = ""
	return s
}

// python is the interpreter that Debian's python3-portalocker installs for.
const python = "/usr/bin/python3"

func lookPython() bool {
	_, err := exec.LookPath(python)
	return err == nil
}
