package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

func TestMain(m *testing.M) {
	if os.Getenv(holderEnv) != "" { // the crash section re-executes the test binary
		os.Exit(holderMain())
	}
	if os.Getenv(contenderEnv) != "" { // and so does the xhandoff section
		os.Exit(contenderMain())
	}
	os.Exit(m.Run())
}

// TestShortRun runs the whole harness with -short and checks that every
// table has every row and nothing failed.
func TestShortRun(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v", errNoRedis)
		}
		t.Skip(errNoRedis)
	}
	var out, log bytes.Buffer
	if err := run([]string{"-short"}, &out, &log); err != nil {
		if errors.Is(err, errNoRedis) && os.Getenv("CI") != "true" {
			t.Skip(err)
		}
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	report := out.String()
	t.Log("\n" + report)
	t.Log("progress:\n" + log.String())

	var rows []string
	for _, p := range codecPaths {
		rows = append(rows, "| "+p.name+" ")
		for _, r := range replies {
			rows = append(rows, "BenchmarkCodec/"+r.name+"/"+p.name+"-")
		}
	}
	for _, r := range cycleRows {
		rows = append(rows, "| "+r.name+" ", "BenchmarkCycle/"+r.name+"-")
	}
	for _, p := range lockPeers {
		for _, n := range []int{4, 16} {
			rows = append(rows, fmt.Sprintf("BenchmarkHandoff/waiters=%d/%s-", n, p.name))
			if !regexp.MustCompile(fmt.Sprintf(`(?m)^\| %s +\| +%d \|`, regexp.QuoteMeta(p.name), n)).MatchString(report) {
				t.Errorf("hand-off table lacks %s with %d waiters", p.name, n)
			}
		}
		rows = append(rows, "BenchmarkCrash/"+p.name+"-", fmt.Sprintf("BenchmarkXHandoff/procs=%d/%s-", xprocs, p.name))
	}
	rows = append(rows, "## 1. Codec", "## 2. Lock cycle", "## 3. Hand-off", "## 4. Hand-off across processes", "## 5. Crash", "## 6. Python",
		"## benchstat", "| CPU ", "| redis-server ")
	if exec.Command(python, "-c", "import portalocker, redis").Run() == nil {
		rows = append(rows, "| portalocker 2.2.1 ", "BenchmarkPython/portalocker-2.2.1/cycle-", "BenchmarkPython/pubsublock/cycle-")
	} else {
		if os.Getenv("CI") == "true" {
			t.Errorf("CI=true but %s cannot import portalocker (apt-get install -y python3-portalocker python3-redis)", python)
		}
		rows = append(rows, "skipped: python3-portalocker not installed")
	}
	for _, r := range rows {
		if !strings.Contains(report, r) {
			t.Errorf("report lacks %q", r)
		}
	}
	for line := range strings.SplitSeq(report, "\n") {
		if strings.HasPrefix(line, "|") && (strings.Contains(line, "failed") || strings.Contains(line, "VIOLATION")) {
			t.Errorf("row failed: %s", line)
		}
	}
}

func TestFlags(t *testing.T) {
	for _, args := range [][]string{{"-only", "nope"}, {"-count", "0"}, {"-waiters", "x"}, {"-peers", "nope"}, {"extra"}} {
		if err := run(args, &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
			t.Errorf("run(%q) succeeded", args)
		}
	}
}
