//go:build linux

package chaos

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pubsublock/pubsublock/internal/oneshot"
	"github.com/pubsublock/pubsublock/resp"
)

// server is a redis-server process that the test starts, restarts on the
// same port, and watches: an exit that the test did not cause is a crash,
// reported on crashes. (redistest.Server restarts too, but cannot say that
// its server died on its own, which is what this test looks for.)
type server struct {
	name    string // "lock" or "oracle", for messages
	bin     string
	dir     string
	logfile string
	port    int
	args    []string // after the binary, fixed at the first start

	crashes chan crash // an exit the test did not ask for; buffered

	mu       sync.Mutex    // guards cmd, exited and stopping
	cmd      *exec.Cmd     // the running process, nil when stopped
	exited   chan struct{} // closed when cmd has been reaped
	stopping bool          // the test is stopping cmd
}

// crash is a server's death that the test did not cause.
type crash struct {
	server string
	at     time.Time
	status string // what Wait said: the exit status or the signal
	log    string // the log lines that explain it
}

func (c crash) String() string {
	what := c.status
	for line := range strings.Lines(c.log) {
		if strings.Contains(line, "Guru Meditation") || strings.Contains(line, "ASSERTION FAILED") {
			_, after, _ := strings.Cut(line, " # ")
			what += "; " + strings.TrimSpace(after)
			break
		}
	}
	return fmt.Sprintf("redis-server (%s) died on its own at %s: %s; its log:\n%s",
		c.server, c.at.Format("15:04:05.000"), what, c.log)
}

// startServer starts bin on a free port of 127.0.0.1 in dir, with
// persistence as extra says, and waits until it answers PING.
func startServer(name, bin, dir string, extra ...string) (*server, error) {
	s := &server{name: name, bin: bin, dir: dir, logfile: filepath.Join(dir, name+".log"),
		crashes: make(chan crash, 1)}
	for attempt := 1; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s.port = port
		s.args = append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
			"--daemonize", "no", "--save", ""}, extra...)
		err = s.start()
		if err == nil {
			return s, nil
		}
		if attempt == 5 || !strings.Contains(err.Error(), "Address already in use") {
			return nil, err
		}
	}
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Addr returns "127.0.0.1:<port>".
func (s *server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// start runs the server and waits up to 10s for it to answer PING.
func (s *server) start() error {
	f, err := os.OpenFile(s.logfile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "chaos: %s starting %s %s\n", time.Now().Format("15:04:05.000"), s.bin, strings.Join(s.args, " "))
	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	f.Close()
	if err != nil {
		return err
	}
	exited := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.exited, s.stopping = cmd, exited, false
	s.mu.Unlock()
	go s.watch(cmd, exited)

	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err := oneshot.Do(s.Addr(), "PING")
		if err == nil && string(v.Str) == "PONG" {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("redis-server (%s) exited at start: %s", s.name, s.logTail(20))
		default:
		}
		if time.Now().After(deadline) {
			s.stop()
			return fmt.Errorf("redis-server (%s) does not answer PING: %v", s.name, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// watch reaps cmd and reports a crash unless the test was stopping it.
func (s *server) watch(cmd *exec.Cmd, exited chan struct{}) {
	err := cmd.Wait()
	at := time.Now()
	s.mu.Lock()
	expected := s.stopping || s.cmd != cmd
	if s.cmd == cmd {
		s.cmd = nil
	}
	s.mu.Unlock()
	close(exited)
	if expected {
		return
	}
	status := "exit status 0"
	if err != nil {
		status = err.Error()
	}
	select {
	case s.crashes <- crash{server: s.name, at: at, status: status, log: s.crashLog()}:
	default:
	}
}

// stop stops the server (SIGTERM, and SIGKILL after 5s) and waits until
// it has been reaped. A stopped server stays stopped.
func (s *server) stop() { _ = s.halt(false) }

// shutdown is stop, but first with SHUTDOWN, which the server obeys at
// once: redis-server acts on a SIGTERM only at its next cron tick, up to
// 100ms later, and serves until then, so a fault that began with one would
// claim holds it could not have ended. It returns the server's refusal of
// SHUTDOWN, if any (it then stops the server as stop does).
func (s *server) shutdown() error { return s.halt(true) }

// halt is stop, and shutdown when command is set.
func (s *server) halt(command bool) (refused error) {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.stopping = true
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	if command {
		_ = cmd.Process.Signal(syscall.SIGCONT) // a stopped server answers nothing
		_, err := oneshot.Do(s.Addr(), "SHUTDOWN")
		var re resp.Error
		if errors.As(err, &re) {
			refused = fmt.Errorf("SHUTDOWN: %w", err)
		}
		select {
		case <-exited:
			return refused
		case <-time.After(2 * time.Second):
		}
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Process.Signal(syscall.SIGCONT)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
	return refused
}

// restart starts the server again on the same port, once stopped (see
// shutdown; a running server is stopped first).
func (s *server) restart() error {
	s.stop()
	var err error
	for range 50 { // the port can linger a moment
		if err = s.start(); err == nil || !strings.Contains(err.Error(), "Address already in use") {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// alive reports whether the server process runs.
func (s *server) alive() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// crashLog returns the lines of the log that tell why the server died:
// from a "Guru Meditation", an assertion or a crash report on, else the
// tail.
func (s *server) crashLog() string {
	f, err := os.Open(s.logfile)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	from := -1
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "chaos: ") && strings.Contains(line, " starting ") {
			lines, from = lines[:0], -1 // only the last run counts
		}
		lines = append(lines, line)
		if from < 0 && isCrashLine(line) {
			from = len(lines) - 1
		}
	}
	if from < 0 {
		from = max(len(lines)-12, 0)
	}
	out := lines[from:]
	if len(out) > 12 {
		out = out[:12]
	}
	return strings.Join(out, "\n")
}

// isCrashLine says whether a redis-server log line reports a crash.
func isCrashLine(line string) bool {
	for _, s := range []string{"Guru Meditation", "ASSERTION FAILED", "crashed by signal", "REDIS BUG REPORT"} {
		if strings.Contains(line, s) {
			return true
		}
	}
	return false
}

// logTail returns the last n lines of the log.
func (s *server) logTail(n int) string {
	b, err := os.ReadFile(s.logfile)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

// do runs one command on a new connection and returns the reply as text:
// a string as it is, an integer in decimal, an array's elements joined by
// spaces.
func (s *server) do(args ...string) (string, error) {
	v, err := oneshot.Do(s.Addr(), args...)
	if err != nil {
		return "", err
	}
	return text(v), nil
}

func text(v resp.Value) string {
	switch {
	case v.Elems != nil:
		parts := make([]string, len(v.Elems))
		for i, e := range v.Elems {
			parts[i] = text(e)
		}
		return strings.Join(parts, " ")
	case v.Str != nil:
		return string(v.Str)
	default:
		return strconv.FormatInt(v.Int, 10)
	}
}
