//go:build linux

package chaos

import (
	"bufio"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pubsublock/pubsublock/internal/chaos/oracle"
)

// spec describes one contender: a process, restarted under the same name
// (with the next incarnation) after the test SIGKILLs it.
type spec struct {
	name   string   // "g1", "p1": no dots (see oracle.Event.Hold)
	python bool     // contender.py (portalocker) rather than the Go contender
	resp2  bool     // the Go contender's URL asks for RESP2 (?protocol=2)
	args   []string // its mode flags
	about  string   // for the report
}

// contender is one running incarnation of a spec.
type contender struct {
	spec   spec
	inc    int
	id     string // name.inc: the prefix of its holds, with a dot
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr string        // path of its standard error
	exited chan struct{} // closed once it has been reaped
	// expected is set when the test kills the process or asks it to exit;
	// any other exit is a failure.
	expected atomic.Bool
}

// launcher starts contenders and collects what they print.
type launcher struct {
	dir    string   // for stderr files
	goBin  string   // the built Go contender
	python string   // a python3 that imports portalocker and redis
	script string   // contender.py
	url    string   // the lock server's URL, through the proxy
	common []string // flags of every Go contender
	pyArgs []string // flags of every Python contender
	seed   uint64
	tl     *timeline
	died   chan string // unexpected exits, with their stderr's tail
}

// start starts incarnation inc of s.
func (ln *launcher) start(s spec, inc int) (*contender, error) {
	c := &contender{spec: s, inc: inc, id: s.name + "." + strconv.Itoa(inc), exited: make(chan struct{})}
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%s", ln.seed, c.id)
	seed := strconv.FormatUint(h.Sum64()>>1, 10) // Python's random takes it too
	if s.python {
		args := append([]string{"-u", ln.script, "--id", c.id, "--seed", seed}, ln.pyArgs...)
		c.cmd = exec.Command(ln.python, append(args, s.args...)...)
	} else {
		url := ln.url
		if s.resp2 {
			url += "?protocol=2"
		}
		args := append([]string{"-id", c.id, "-seed", seed, "-url", url}, ln.common...)
		c.cmd = exec.Command(ln.goBin, append(args, s.args...)...)
		c.cmd.Env = append(os.Environ(), "GORACE=halt_on_error=1")
	}
	// Its own process group, so that signals reach it alone, and killed
	// with the test binary if that dies without cleaning up.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	c.stderr = filepath.Join(ln.dir, c.id+".stderr")
	f, err := os.Create(c.stderr)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	c.cmd.Stderr = f
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	go ln.follow(c, out)
	return c, nil
}

// follow records what c prints until it exits, then reaps it.
func (ln *launcher) follow(c *contender, out io.Reader) {
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var ev oracle.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			ln.tl.garbage(c.id, sc.Text())
			continue
		}
		ln.tl.add(record{proc: c.id, python: c.spec.python, Event: ev})
	}
	err := c.cmd.Wait()
	ln.tl.exited(c.id)
	close(c.exited)
	if !c.expected.Load() {
		ln.died <- fmt.Sprintf("contender %s (%s) exited on its own (%v); stderr:\n%s",
			c.id, c.spec.about, err, tail(c.stderr, 30))
	}
}

// signal sends sig to c's process group.
func (c *contender) signal(sig syscall.Signal) error {
	return syscall.Kill(-c.cmd.Process.Pid, sig)
}

// kill SIGKILLs c and waits until it has been reaped.
func (c *contender) kill() {
	c.expected.Store(true)
	_ = c.signal(syscall.SIGKILL)
	<-c.exited
}

// ask writes a line to c's standard input.
func (c *contender) ask(line string) {
	_, _ = io.WriteString(c.stdin, line+"\n")
}

// finish asks c to exit after its current hold (end of standard input),
// and kills it if it has not within grace.
func (c *contender) finish(grace time.Duration) {
	c.expected.Store(true)
	_ = c.signal(syscall.SIGCONT)
	c.stdin.Close()
	select {
	case <-c.exited:
	case <-time.After(grace):
		c.kill()
	}
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

// record is an Event and who printed it.
type record struct {
	proc   string // the contender's id
	python bool
	oracle.Event
}

// timeline collects every contender's records, and keeps what the fault
// loop asks about while the test runs: who holds the lock now.
type timeline struct {
	mu       sync.Mutex // guards everything below
	recs     []record
	holding  map[string]record // proc -> its hold's acquired record, until released
	acquired int               // acquired records
	last     time.Time         // of the last acquired record
	started  map[string]bool   // procs that printed start
	garbled  []string          // lines that were not Events
	longWait map[string]chan string
}

func newTimeline() *timeline {
	return &timeline{holding: make(map[string]record), started: make(map[string]bool),
		longWait: make(map[string]chan string), last: time.Now()}
}

func (tl *timeline) add(r record) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.recs = append(tl.recs, r)
	switch r.Kind {
	case oracle.Start:
		tl.started[r.proc] = true
	case oracle.Acquired:
		tl.holding[r.proc] = r
		tl.acquired++
		tl.last = time.Now()
	case oracle.Released:
		delete(tl.holding, r.proc)
	case oracle.Enter:
		if ch := tl.longWait[r.proc]; ch != nil && r.Long {
			ch <- r.Hold
			delete(tl.longWait, r.proc)
		}
	}
}

// garbage records a line that was not an Event.
func (tl *timeline) garbage(proc, line string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.garbled = append(tl.garbled, proc+": "+line)
}

// exited forgets the hold of a process that is gone.
func (tl *timeline) exited(proc string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	delete(tl.holding, proc)
}

// progress returns how many acquisitions there were, and when the last.
func (tl *timeline) progress() (int, time.Time) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return tl.acquired, tl.last
}

// holder returns the process and hold that acquired last among those that
// hold the lock by their own account; ok is false when none does.
func (tl *timeline) holder() (proc, hold string, ok bool) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	var best record
	for p, r := range tl.holding {
		if !ok || r.Time > best.Time {
			best, proc, ok = r, p, true
		}
	}
	return proc, best.Hold, ok
}

// expectLong returns a channel that gets the name of proc's next long hold
// when it enters the critical section.
func (tl *timeline) expectLong(proc string) <-chan string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	ch := make(chan string, 1)
	tl.longWait[proc] = ch
	return ch
}

// forgetLong cancels expectLong.
func (tl *timeline) forgetLong(proc string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	delete(tl.longWait, proc)
}

// allStarted reports whether every proc printed start.
func (tl *timeline) allStarted(procs []string) bool {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	for _, p := range procs {
		if !tl.started[p] {
			return false
		}
	}
	return true
}

// snapshot returns a copy of the records so far, and the garbled lines.
func (tl *timeline) snapshot() ([]record, []string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return append([]record(nil), tl.recs...), append([]string(nil), tl.garbled...)
}
