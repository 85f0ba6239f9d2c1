package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// The bench re-executes itself as a lock holder for the crash section when
// holderEnv names a peer; holderArgsEnv carries "addr|name|ttl".
const (
	holderEnv     = "PUBSUBLOCK_BENCH_HOLDER"
	holderArgsEnv = "PUBSUBLOCK_BENCH_HOLDER_ARGS"
)

// killDelay is how long the waiter has been waiting when the holder is
// killed.
const killDelay = 300 * time.Millisecond

// holderMain is the holder process: it acquires, says "held", and waits
// to be killed (for at most a minute).
func holderMain() int {
	p, ok := findPeer(os.Getenv(holderEnv))
	parts := strings.Split(os.Getenv(holderArgsEnv), "|")
	if !ok || len(parts) != 3 {
		fmt.Fprintln(os.Stderr, "holder: bad environment")
		return 2
	}
	ttl, err := time.ParseDuration(parts[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "holder:", err)
		return 2
	}
	lk, err := p.new(parts[0], parts[1], ttl)
	if err != nil {
		fmt.Fprintln(os.Stderr, "holder:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := lk.acquire(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "holder:", err)
		return 1
	}
	fmt.Println("held")
	time.Sleep(time.Minute)
	return 0
}

// crashTTL is the lock lifetime of p in the crash test.
func crashTTL(cfg *config, p peer) time.Duration {
	if p.crashTTL == 0 {
		return 0
	}
	if cfg.short {
		return time.Second
	}
	return p.crashTTL
}

func runCrash(cfg *config, rs *results) {
	for _, p := range cfg.peers {
		runs := 1
		if p.crashTTL == 0 && !cfg.short {
			runs = 5 // fast enough to take a few samples
		}
		var samples []time.Duration
		for range runs {
			d, err := crashOnce(cfg, p, crashTTL(cfg, p))
			if err != nil {
				fmt.Fprintf(cfg.log, "crash %s: %v\n", p.name, err)
				continue
			}
			samples = append(samples, d)
		}
		if len(samples) == 0 {
			continue
		}
		slices.Sort(samples)
		rs.add(result{name: "Crash/" + p.name, n: len(samples), ns: float64(percentile(samples, 50)),
			bytes: -1, allocs: -1, extra: []metric{{"max-ns", float64(samples[len(samples)-1])}}})
	}
}

// crashOnce starts a holder process, makes a waiter wait killDelay, then
// SIGKILLs the holder and returns how long the waiter took to hold the
// lock after the kill.
func crashOnce(cfg *config, p peer, ttl time.Duration) (time.Duration, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	name := uniqueName("crash")
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), holderEnv+"="+p.name,
		fmt.Sprintf("%s=%s|%s|%s", holderArgsEnv, cfg.srv.addr, name, ttl))
	cmd.Stderr = cfg.log
	cmd.SysProcAttr = procAttr()
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		if strings.TrimSpace(s) != "held" {
			return 0, errors.New("holder did not acquire")
		}
	case <-time.After(15 * time.Second):
		return 0, errors.New("holder did not acquire within 15s")
	}

	w, err := p.new(cfg.srv.addr, name, ttl)
	if err != nil {
		return 0, err
	}
	defer w.close()
	ctx, cancel := context.WithTimeout(context.Background(), max(ttl, time.Second)+30*time.Second)
	defer cancel()
	type outcome struct {
		at  time.Time
		err error
	}
	got := make(chan outcome, 1)
	go func() {
		err := w.acquire(ctx)
		got <- outcome{time.Now(), err}
	}()
	select {
	case o := <-got:
		if o.err == nil {
			_ = w.release(context.Background())
		}
		return 0, fmt.Errorf("waiter returned while the holder lived: %v", o.err)
	case <-time.After(killDelay):
	}
	killed := time.Now()
	if err := cmd.Process.Kill(); err != nil {
		return 0, err
	}
	o := <-got
	if o.err != nil {
		return 0, fmt.Errorf("waiter: %w", o.err)
	}
	_ = w.release(context.Background())
	return o.at.Sub(killed), nil
}

func printCrash(cfg *config, rs *results) {
	w := cfg.out
	fmt.Fprintln(w, "## 5. Crash hand-off: holder process SIGKILLed")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "A holder process (this binary, re-executed) acquires; a waiter starts; %v later the holder\n", killDelay)
	fmt.Fprintln(w, "gets SIGKILL. Time from the kill to the waiter holding the lock.")
	fmt.Fprintln(w)
	t := table{head: []string{"peer", "how a dead holder's lock is freed", "TTL used", "time to hold (median)", "max", "samples"}, align: "llrrrr"}
	for _, p := range cfg.peers {
		ttl := "-"
		if d := crashTTL(cfg, p); d > 0 {
			ttl = d.String()
		}
		m, ok := rs.median("Crash/" + p.name)
		if !ok {
			t.row(p.name, p.ttl, ttl, "failed")
			continue
		}
		t.row(p.name, p.ttl, ttl, dur(m.ns), dur(m.metric("max-ns")), fmt.Sprint(m.n))
	}
	t.write(w)
	if cfg.short {
		fmt.Fprintln(w, "(-short: every TTL lock uses a 1s TTL instead of the one named.)")
		fmt.Fprintln(w)
	}
}
