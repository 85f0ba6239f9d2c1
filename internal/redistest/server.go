package redistest

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// redisPackages are the Debian packages that bring redis-server and
// redis-cli.
const redisPackages = "redis-server redis-tools"

// The environment variables that choose the programs the servers run
// instead of redis-server and redis-cli from PATH, e.g. a Valkey.
const (
	serverEnv = "PUBSUBLOCK_REDIS_SERVER"
	cliEnv    = "PUBSUBLOCK_REDIS_CLI"
)

const (
	// startTimeout bounds how long a server may take to answer PING.
	startTimeout = 10 * time.Second
	// stopTimeout is how long a server may take to exit after SIGTERM
	// before it gets SIGKILL.
	stopTimeout = 5 * time.Second
	// startAttempts is how often a server is started on new ports when
	// someone else took the free port first.
	startAttempts = 5
)

// Server is a redis-server process on 127.0.0.1, started by [Redis],
// [Cluster] or [Sentinel] and stopped when the test ends.
type Server struct {
	binary  string   // path of redis-server or what PUBSUBLOCK_REDIS_SERVER names
	dir     string   // working directory, a t.TempDir
	logfile string   // stdout and stderr of every start, appended
	port    int      // set before the first start, then fixed
	argv    []string // arguments after the binary (see configure), fixed after the first start

	mu   sync.Mutex // guards proc
	proc *process   // the running process; nil when stopped
}

// process is one run of a server.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited and been reaped
	err  error         // what cmd.Wait returned; read only after done
}

// Redis starts redis-server from PATH, or the program that the environment
// variable PUBSUBLOCK_REDIS_SERVER names, on a free port of 127.0.0.1, with
// its working directory in t.TempDir, persistence off (--save ""
// --appendonly no) and --daemonize no, followed by args, options as on the
// command line (e.g. "--maxmemory", "10mb", or "--rename-command", "HELLO",
// "" to disable HELLO). The options reach the server through a config file,
// each argument quoted, so an empty argument or one with spaces or quotes
// means the same to every server. It returns once the server answers PING,
// within 10s, and stops it with t.Cleanup. When redis-server is missing the
// test is skipped, or fails when CI is "true".
func Redis(t testing.TB, args ...string) *Server {
	t.Helper()
	return startServer(t, 0, false, func(dir string, ports []int) []string {
		return append(baseArgs(dir, ports[0]), args...)
	})
}

// baseArgs are the arguments every plain or cluster server starts with.
func baseArgs(dir string, port int) []string {
	return []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--dir", dir,
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
	}
}

// startServer starts redis-server, a sentinel if sentinel is true, with the
// options that build returns for a working directory and 1+extraPorts free
// ports, the first being the server's own. build runs again with new ports
// when a port was taken before the server could bind it.
func startServer(t testing.TB, extraPorts int, sentinel bool, build func(dir string, ports []int) []string) *Server {
	t.Helper()
	s := &Server{binary: envBinary(t, serverEnv, "redis-server", redisPackages), dir: t.TempDir()}
	s.logfile = filepath.Join(s.dir, "redis.log")
	t.Cleanup(s.Stop)
	for attempt := 1; ; attempt++ {
		ports := freePorts(t, 1+extraPorts)
		s.port = ports[0]
		options := build(s.dir, ports)
		err := s.configure(options, sentinel)
		if err == nil {
			err = s.start()
		}
		if err == nil {
			return s
		}
		if attempt < startAttempts && errors.Is(err, errAddrInUse) {
			continue
		}
		t.Fatalf("redistest: start %s with %q: %v", s.binary, options, err)
	}
}

// envBinary returns the program that the environment variable env names,
// looked up on PATH unless it contains a slash, and fails the test if it
// is not there. When env is unset or empty it returns
// RequireBinary(t, name, pkg).
func envBinary(t testing.TB, env, name, pkg string) string {
	t.Helper()
	v := os.Getenv(env)
	if v == "" {
		return RequireBinary(t, name, pkg)
	}
	path, err := exec.LookPath(v)
	if err != nil {
		// Set on purpose, so never a skip.
		t.Fatalf("redistest: %s=%s: %v", env, v, err)
	}
	return path
}

// configure writes options, as on the command line ("--port", "6379",
// "--save", ""), to a config file in the server's directory, one directive
// per line with each argument quoted, and makes that file the server's
// argument, followed by --sentinel for a sentinel. An argument that starts
// with "--" begins a directive.
//
// A file rather than the command line, because servers turn their
// arguments into config lines differently: Redis quotes each argument, so
// "" is an empty value, while Valkey 8.1 wraps it in quotes without
// escaping, so an argument with a quote is a syntax error and a backslash
// starts an escape.
func (s *Server) configure(options []string, sentinel bool) error {
	name := "redis.conf"
	if sentinel {
		name = "sentinel.conf" // the sentinel rewrites it as its state changes
	}
	var b strings.Builder
	for i, o := range options {
		if directive, ok := strings.CutPrefix(o, "--"); ok {
			if i > 0 {
				b.WriteByte('\n')
			}
			b.WriteString(directive)
			continue
		}
		if i == 0 {
			return fmt.Errorf("option %q does not start with --", o)
		}
		b.WriteByte(' ')
		b.WriteString(quoteConfig(o))
	}
	b.WriteByte('\n')
	conf := filepath.Join(s.dir, name)
	if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
		return err
	}
	s.argv = []string{conf}
	if sentinel {
		s.argv = append(s.argv, "--sentinel")
	}
	return nil
}

// quoteConfig quotes arg for a config file line, as the servers split it
// (sdssplitargs): in double quotes, with backslash escapes for quotes,
// backslashes and every byte that is not printable ASCII.
func quoteConfig(arg string) string {
	b := []byte{'"'}
	for i := 0; i < len(arg); i++ {
		switch c := arg[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c >= ' ' && c <= '~':
			b = append(b, c)
		default:
			b = fmt.Appendf(b, "\\x%02x", c)
		}
	}
	return string(append(b, '"'))
}

// errAddrInUse says the server could not bind its port.
var errAddrInUse = errors.New("address already in use")

// start runs the server and waits until it answers PING.
func (s *Server) start() error {
	f, err := os.OpenFile(s.logfile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "redistest: starting %s %s\n", s.binary, strings.Join(s.argv, " "))
	if conf, err := os.ReadFile(s.argv[0]); err == nil {
		fmt.Fprintf(f, "redistest: %s:\n%s", s.argv[0], conf)
	}
	cmd := exec.Command(s.binary, s.argv...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = procAttr()
	err = cmd.Start()
	f.Close() // the child has its own copy
	if err != nil {
		return err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()

	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-p.done:
			s.mu.Lock()
			if s.proc == p {
				s.proc = nil
			}
			s.mu.Unlock()
			tail := s.logTail()
			if strings.Contains(tail, "Address already in use") {
				return fmt.Errorf("%w: %s", errAddrInUse, tail)
			}
			return fmt.Errorf("exited (%v) before answering PING; log %s:\n%s", p.err, s.logfile, tail)
		default:
		}
		err := s.ready(p.cmd.Process.Pid)
		if err == nil {
			return nil
		}
		if errors.Is(err, errAddrInUse) {
			s.Stop()
			return err
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("no answer to PING within %v (last: %v); log %s:\n%s", startTimeout, err, s.logfile, s.logTail())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ready says whether the server answers PING and is the process pid, not
// some other server that took the port first.
func (s *Server) ready(pid int) error {
	v, err := do(s.Addr(), "PING")
	if err != nil {
		return err
	}
	if v != "PONG" {
		return fmt.Errorf("PING answered %q", render(v))
	}
	v, err = do(s.Addr(), "INFO", "server")
	if err != nil {
		return err
	}
	if got, _ := infoField(render(v), "process_id"); got != strconv.Itoa(pid) {
		return fmt.Errorf("%w: %s is served by process %s, not %d", errAddrInUse, s.Addr(), got, pid)
	}
	return nil
}

// logTail returns the end of the log file, for error messages.
func (s *Server) logTail() string {
	f, err := os.Open(s.logfile)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	const n = 4096
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(st.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// Addr returns the server's address, "127.0.0.1:<port>".
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Port returns the server's TCP port. It stays the same across Restart.
func (s *Server) Port() int { return s.port }

// URL returns the server's address as "redis://127.0.0.1:<port>".
func (s *Server) URL() string { return "redis://" + s.Addr() }

// Logfile returns the path of the file that collects the server's output
// (its log) across all its starts, for debugging a failed test.
func (s *Server) Logfile() string { return s.logfile }

// Pid returns the process id of the running server, for signalling it (for
// instance SIGSTOP to freeze it), or 0 when it is stopped. It changes with
// Restart.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.cmd.Process.Pid
}

// Stop stops the server: SIGTERM (and SIGCONT, so a stopped process can
// act on it), then SIGKILL if it has not exited within 5s. It returns once
// the process has been reaped. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		return
	}
	// Errors mean the process has exited already; done tells when.
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	resume(p.cmd.Process)
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Restart stops the server and starts it again on the same port with the
// same arguments. Every client is disconnected and all pub/sub state is
// gone; the data set is too, as persistence is off, but a cluster node
// keeps its identity and slots (nodes.conf) and a sentinel its
// configuration. It fails the test if the server does not come back. Do
// not call it concurrently with Stop or Restart of the same server.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		t.Fatalf("redistest: restart redis-server on %s: %v", s.Addr(), err)
	}
}

// Do runs one command on a new connection to the server and returns the
// reply as text: simple and bulk strings as they are, integers in decimal,
// nil as "", and the elements of an array one per line. An error reply is
// returned as the error, its text as the server sent it (e.g. "MOVED 3999
// 127.0.0.1:30001"). The connection speaks RESP2 and is closed before Do
// returns; each call is bounded by 10s.
func (s *Server) Do(args ...string) (string, error) { return Do(s.Addr(), args...) }

// waitFor calls cond every 20ms until it returns nil, and fails the test
// with cond's last error if that takes longer than timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: %s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
