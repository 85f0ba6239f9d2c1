//go:build unix

package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/pubsublock/pubsublock/internal/oneshot"
	"github.com/pubsublock/pubsublock/resp"
)

// server is the embedded Redis the demo runs against.
type server struct {
	addr string
	real bool   // a redis-server process, rather than miniredis
	name string // what it is, for the timeline

	mini *miniredis.Miniredis // when !real
	cmd  *exec.Cmd            // when real
	dir  string               // its working directory, when real
}

// startServer starts redis-server from PATH, or miniredis when there is
// none or DEMO_MINIREDIS is set.
func startServer() (*server, error) {
	if os.Getenv("DEMO_MINIREDIS") == "" {
		if path, err := exec.LookPath("redis-server"); err == nil {
			return startRedis(path)
		}
	}
	m, err := miniredis.Run()
	if err != nil {
		return nil, err
	}
	return &server{addr: m.Addr(), name: "miniredis (in-process)", mini: m}, nil
}

// startRedis runs redis-server on a free loopback port in a temporary
// directory with persistence off. A port taken by someone else between
// the choice and the bind costs a retry.
func startRedis(path string) (*server, error) {
	dir, err := os.MkdirTemp("", "pubsublock-demo-")
	if err != nil {
		return nil, err
	}
	var last error
	for range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		logf, err := os.Create(filepath.Join(dir, "redis.log"))
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		s := &server{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), real: true, dir: dir}
		s.cmd = exec.Command(path, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
			"--save", "", "--appendonly", "no", "--daemonize", "no")
		s.cmd.Stdout, s.cmd.Stderr = logf, logf
		s.cmd.SysProcAttr = childAttr()
		err = s.cmd.Start()
		logf.Close()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		if last = s.await(); last == nil {
			v, _ := do(s.addr, "INFO", "server")
			s.name = "redis-server " + infoField(string(v.Str), "redis_version") + " (temporary, port " + strconv.Itoa(port) + ")"
			return s, nil
		}
		s.stopProcess()
	}
	os.RemoveAll(dir)
	return nil, fmt.Errorf("redis-server did not start: %w", last)
}

// await waits until the server answers PING.
func (s *server) await() error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		v, err := do(s.addr, "PING")
		if err == nil && string(v.Str) == "PONG" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no PONG within 5s: %v", err)
		}
		if syscall.Kill(s.cmd.Process.Pid, 0) != nil {
			return errors.New("exited at start")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// url is the server's address as a pubsublock Config.URL.
func (s *server) url() string { return "redis://" + s.addr }

// stop stops the server and removes its files.
func (s *server) stop() {
	if s.mini != nil {
		s.mini.Close()
		return
	}
	s.stopProcess()
	os.RemoveAll(s.dir)
}

func (s *server) stopProcess() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
}

// do runs one command on a fresh connection: the "second client" of the
// demo, which lists and kills other clients.
func do(addr string, args ...string) (resp.Value, error) { return oneshot.Do(addr, args...) }

// infoField returns the value of field in INFO text.
func infoField(info, field string) string {
	for line := range strings.Lines(info) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && k == field {
			return v
		}
	}
	return "?"
}

// holderID returns the CLIENT LIST id of the connection holding channel:
// the subscribed client named channel-lock.
func holderID(addr, channel string) (string, error) {
	v, err := do(addr, "CLIENT", "LIST", "TYPE", "pubsub")
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(v.Str)) {
		if strings.Contains(line, " name="+channel+"-lock ") && strings.Contains(line, " sub=1 ") {
			id, _, _ := strings.Cut(strings.TrimPrefix(line, "id="), " ")
			return id, nil
		}
	}
	return "", fmt.Errorf("no client named %s-lock holds %s", channel, channel)
}
