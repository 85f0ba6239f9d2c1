package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The bench re-executes itself as a contender process for the
// cross-process hand-off section when contenderEnv names a peer;
// contenderArgsEnv carries "addr|name|path of the turn file".
const (
	contenderEnv     = "PUBSUBLOCK_BENCH_CONTENDER"
	contenderArgsEnv = "PUBSUBLOCK_BENCH_CONTENDER_ARGS"
)

// xprocs is how many contender processes take turns on the lock. A
// process that released waits until another one acquired before it
// queues again, so xprocs-1 wait at every release.
const xprocs = 3

// contenderMain is a contender process. Until its standard input closes,
// it acquires, stamps the turn file, prints "A <unix ns>", works holdFor,
// stamps the time and releases (printing "R <unix ns>" during its next
// hold), and waits (up to a second) for another process's stamp in the
// turn file.
func contenderMain() int {
	p, ok := findPeer(os.Getenv(contenderEnv))
	parts := strings.Split(os.Getenv(contenderArgsEnv), "|")
	if !ok || len(parts) != 3 {
		fmt.Fprintln(os.Stderr, "contender: bad environment")
		return 2
	}
	turn, err := os.OpenFile(parts[2], os.O_RDWR, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "contender:", err)
		return 1
	}
	defer turn.Close()
	lk, err := p.new(parts[0], parts[1], 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "contender:", err)
		return 1
	}
	defer lk.close()
	var stop atomic.Bool
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); stop.Store(true) }()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	mine := make([]byte, 8)
	seen := make([]byte, 8)
	var released int64 // the last release's stamp, printed during the next hold
	defer func() {
		if released != 0 {
			fmt.Println("R", released)
		}
	}()
	for !stop.Load() {
		if err := lk.acquire(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "contender:", err)
			return 1
		}
		now := time.Now().UnixNano()
		binary.LittleEndian.PutUint64(mine, uint64(now))
		_, _ = turn.WriteAt(mine, 0)
		// Printing (a write to a pipe) happens while holding, off the
		// timed path of any hand-off.
		fmt.Println("A", now)
		if released != 0 {
			fmt.Println("R", released)
		}
		time.Sleep(holdFor)
		released = time.Now().UnixNano()
		if err := lk.release(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, "contender:", err)
			return 1
		}
		for deadline := time.Now().Add(time.Second); !stop.Load() && time.Now().Before(deadline); {
			if _, err := turn.ReadAt(seen, 0); err != nil || !bytes.Equal(seen, mine) {
				break
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	return 0
}

// xevent is a line of a contender process.
type xevent struct {
	proc    int
	acquire bool // "A"; else "R"
	at      int64
}

func runXHandoff(cfg *config, rs *results) {
	for _, p := range cfg.peers {
		name := "XHandoff/procs=" + strconv.Itoa(xprocs) + "/" + p.name
		samples, st, err := xhandoff(cfg, p)
		if err != nil {
			st.errors++
			st.firstErr = err.Error()
		}
		noteHandoff(name, st)
		addLatencies(rs, name, samples)
	}
}

// xhandoff runs xprocs contender processes of p on one lock and returns,
// for every acquisition that follows another process's release, the time
// from the release being called to the acquisition returning (wall clock,
// one machine).
func xhandoff(cfg *config, p peer) ([]time.Duration, handoffStats, error) {
	var st handoffStats
	exe, err := os.Executable()
	if err != nil {
		return nil, st, err
	}
	turn, err := os.CreateTemp("", "xhandoff-turn")
	if err != nil {
		return nil, st, err
	}
	defer os.Remove(turn.Name())
	defer turn.Close()
	if _, err := turn.Write(make([]byte, 8)); err != nil {
		return nil, st, err
	}
	name := uniqueName("xhandoff")
	want := cfg.handoffs + warmupHandoffs + xprocs // acquisitions to see
	var (
		mu       sync.Mutex
		events   []xevent
		acquired int
		enough   = make(chan struct{})
		wg       sync.WaitGroup
		cmds     []*exec.Cmd
		stdins   []io.Closer
	)
	defer func() {
		for _, cmd := range cmds {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	stderr := &lockedWriter{w: cfg.log} // the processes write at once
	for i := range xprocs {
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), contenderEnv+"="+p.name,
			fmt.Sprintf("%s=%s|%s|%s", contenderArgsEnv, cfg.srv.addr, name, turn.Name()))
		cmd.Stderr = stderr
		cmd.SysProcAttr = procAttr()
		in, err := cmd.StdinPipe()
		if err != nil {
			return nil, st, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, st, err
		}
		if err := cmd.Start(); err != nil {
			return nil, st, err
		}
		cmds, stdins = append(cmds, cmd), append(stdins, in)
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				kind, at, ok := strings.Cut(sc.Text(), " ")
				ns, err := strconv.ParseInt(at, 10, 64)
				if !ok || err != nil || (kind != "A" && kind != "R") {
					continue
				}
				mu.Lock()
				events = append(events, xevent{proc: i, acquire: kind == "A", at: ns})
				if kind == "A" {
					if acquired++; acquired == want {
						close(enough)
					}
				}
				mu.Unlock()
			}
		}()
	}
	var failed error
	select {
	case <-enough:
	case <-time.After(time.Minute):
		failed = errors.New("timed out before all hand-offs")
	}
	for _, in := range stdins {
		_ = in.Close() // each process stops after its turn
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		for _, cmd := range cmds {
			_ = cmd.Process.Kill()
		}
		<-done
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil && failed == nil {
			failed = fmt.Errorf("contender process: %w", err)
		}
	}
	cmds = nil
	mu.Lock()
	defer mu.Unlock()
	slices.SortFunc(events, func(a, b xevent) int { return cmp.Compare(a.at, b.at) })
	var samples []time.Duration
	holder := -1 // the process between its A and its R
	for i, e := range events {
		switch {
		case e.acquire && holder >= 0:
			st.violations++ // two hold intervals overlap
		case e.acquire:
			holder = e.proc
			if i > 0 && !events[i-1].acquire && events[i-1].proc != e.proc {
				samples = append(samples, time.Duration(e.at-events[i-1].at))
			}
		case e.proc == holder:
			holder = -1
		}
	}
	if len(samples) <= warmupHandoffs {
		return nil, st, failed
	}
	return samples[warmupHandoffs:], st, failed
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (lw *lockedWriter) Write(p []byte) (int, error) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.w.Write(p)
}

func printXHandoff(cfg *config, rs *results) {
	w := cfg.out
	fmt.Fprintln(w, "## 4. Hand-off across processes")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%d processes (this binary, re-executed) take turns on one lock: each acquires, works %v,\n", xprocs, holdFor)
	fmt.Fprintf(w, "releases, and queues again once another process has acquired, so %d wait at each release.\n", xprocs-1)
	fmt.Fprintln(w, "Time from a Release being called to the next process's Acquire returning, on the wall clock.")
	fmt.Fprintln(w)
	floor, hasFloor := rs.median("Cycle/ping-rawsocket")
	t := table{head: []string{"peer", "p50", "p50 × PING", "p99", "mean", "samples", "notes"}, align: "lrrrrrl"}
	for _, p := range cfg.peers {
		name := "XHandoff/procs=" + strconv.Itoa(xprocs) + "/" + p.name
		note := handoffNotes[name].note()
		m, ok := rs.median(name)
		if !ok {
			t.row(p.name, "failed", "", "", "", "", note)
			continue
		}
		ratio := "–"
		if hasFloor && floor.ns > 0 {
			ratio = fmt.Sprintf("%.1f", m.metric("p50-ns")/floor.ns)
		}
		t.row(p.name, dur(m.metric("p50-ns")), ratio, dur(m.metric("p99-ns")), dur(m.ns), fmt.Sprint(m.n), note)
	}
	t.write(w)
}
