package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pubsublock/pubsublock/internal/oneshot"
	"github.com/pubsublock/pubsublock/resp"
)

// redisPackages are the Debian packages that bring redis-server.
const redisPackages = "redis-server redis-tools"

// errNoRedis is returned when redis-server is not installed.
var errNoRedis = errors.New("redis-server not found in PATH (sudo apt-get install -y " + redisPackages + ")")

// server is a redis-server process on a free port of 127.0.0.1, in a
// temporary directory, without persistence.
type server struct {
	addr    string
	version string // e.g. "7.0.15"
	cmd     *exec.Cmd
	dir     string
	done    chan struct{} // closed when the process has exited
}

// startServer starts redis-server (binary, looked up in PATH) and returns
// once it answers PING. It retries on new ports when a port was taken.
func startServer(binary string) (*server, error) {
	path, err := exec.LookPath(binary)
	if err != nil {
		return nil, errNoRedis
	}
	version, err := redisVersion(path)
	if err != nil {
		return nil, err
	}
	var last error
	for range 5 {
		s, err := startOnce(path)
		if err == nil {
			s.version = version
			return s, nil
		}
		last = err
	}
	return nil, last
}

func startOnce(path string) (*server, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("no free port on 127.0.0.1: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir, err := os.MkdirTemp("", "pubsublock-bench-")
	if err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(dir, "redis.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer log.Close()
	cmd := exec.Command(path, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--maxclients", "1000")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	s := &server{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cmd: cmd, dir: dir, done: make(chan struct{})}
	go func() { cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			out, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			os.RemoveAll(dir)
			return nil, fmt.Errorf("redis-server on port %d exited: %s", port, lastLine(out))
		default:
		}
		if err := ping(s.addr); err == nil {
			return s, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.stop()
	return nil, fmt.Errorf("redis-server on port %d did not answer PING within 10s", port)
}

// stop terminates the server (SIGTERM, then SIGKILL after 5s) and removes
// its directory.
func (s *server) stop() {
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	os.RemoveAll(s.dir)
}

// ping sends one PING with our codec on a new connection.
func ping(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(time.Second))
	if _, err := nc.Write(resp.AppendCommand(nil, "PING")); err != nil {
		return err
	}
	v, err := resp.NewReader(bufio.NewReader(nc), resp.Limits{}).Read()
	if err != nil {
		return err
	}
	if string(v.Str) != "PONG" {
		return fmt.Errorf("PING answered %s", v.String())
	}
	return nil
}

// redisVersion runs redis-server --version: "Redis server v=7.0.15 sha=...".
func redisVersion(path string) (string, error) {
	out, err := exec.Command(path, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("redis-server --version: %w", err)
	}
	for f := range strings.FieldsSeq(string(out)) {
		if v, ok := strings.CutPrefix(f, "v="); ok {
			return v, nil
		}
	}
	return strings.TrimSpace(string(out)), nil
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// admin runs one command on a new connection and returns its reply,
// detached from the reader.
func admin(addr string, args ...string) (resp.Value, error) { return oneshot.Do(addr, args...) }

// commandStats returns the calls per command since the last CONFIG
// RESETSTAT, from INFO commandstats, leaving out the bench's own INFO and
// CONFIG calls.
func commandStats(addr string) (map[string]int, error) {
	v, err := admin(addr, "INFO", "commandstats")
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for line := range strings.SplitSeq(string(v.Str), "\n") {
		// cmdstat_client|setname:calls=2,usec=3,...
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		name, isCmd := strings.CutPrefix(name, "cmdstat_")
		if !ok || !isCmd || name == "info" || strings.HasPrefix(name, "config") {
			continue
		}
		calls, _, _ := strings.Cut(strings.TrimPrefix(rest, "calls="), ",")
		n, err := strconv.Atoi(calls)
		if err != nil {
			return nil, fmt.Errorf("INFO commandstats line %q", line)
		}
		out[name] = n
	}
	return out, nil
}
