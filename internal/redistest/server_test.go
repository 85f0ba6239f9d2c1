package redistest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRedis(t *testing.T) {
	s := Redis(t, "--maxmemory", "10mb")
	if got, want := s.Addr(), "127.0.0.1:"+strconv.Itoa(s.Port()); got != want {
		t.Errorf("Addr() = %q, want %q", got, want)
	}
	if got, want := s.URL(), "redis://"+s.Addr(); got != want {
		t.Errorf("URL() = %q, want %q", got, want)
	}
	if s.Pid() == 0 {
		t.Error("Pid() = 0 for a running server")
	}
	if info, err := s.Do("INFO", "server"); err == nil {
		// Valkey adds server_name and valkey_version; its redis_version
		// is the Redis it is compatible with.
		name, _ := infoField(info, "server_name")
		version, _ := infoField(info, "valkey_version")
		redis, _ := infoField(info, "redis_version")
		t.Logf("%s: server_name:%s valkey_version:%s redis_version:%s", s.binary, name, version, redis)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"PING"}, "PONG"},
		{[]string{"SET", "k", "v"}, "OK"},
		{[]string{"GET", "k"}, "v"},
		{[]string{"GET", "missing"}, ""},
		{[]string{"RPUSH", "l", "a", "b"}, "2"},
		{[]string{"LRANGE", "l", "0", "-1"}, "a\nb"},
		{[]string{"CONFIG", "GET", "maxmemory"}, "maxmemory\n10485760"},
		{[]string{"CONFIG", "GET", "save"}, "save\n"},
		{[]string{"CONFIG", "GET", "appendonly"}, "appendonly\nno"},
	} {
		got, err := s.Do(tc.args...)
		if err != nil || got != tc.want {
			t.Errorf("Do(%q) = %q, %v; want %q", tc.args, got, err, tc.want)
		}
	}
	if _, err := s.Do("NOSUCHCOMMAND"); err == nil || !strings.HasPrefix(err.Error(), "ERR unknown command") {
		t.Errorf("Do(NOSUCHCOMMAND) error = %v, want ERR unknown command", err)
	}
	if b, err := os.ReadFile(s.Logfile()); err != nil || !strings.Contains(string(b), "Ready to accept connections") {
		t.Errorf("Logfile() %s: %v, content %q", s.Logfile(), err, b)
	}
}

// TestRedisArgs checks that arguments reach every server as they are: an
// empty one, and one with spaces, quotes, a backslash and a byte that is
// not ASCII.
func TestRedisArgs(t *testing.T) {
	password := "p w\"x'\\y\xff"
	s := Redis(t, "--rename-command", "HELLO", "", "--user", "u", "on", ">"+password, "~*", "+@all")
	if _, err := s.Do("HELLO", "3"); err == nil || !strings.HasPrefix(err.Error(), "ERR unknown command") {
		t.Errorf("HELLO after renaming it to \"\": %v, want ERR unknown command", err)
	}
	replies, err := pipeline(s.Addr(), []string{"AUTH", "u", password}, []string{"ACL", "WHOAMI"})
	if err != nil || len(replies) != 2 || replies[0] != "OK" || replies[1] != "u" {
		t.Errorf("AUTH u %q, ACL WHOAMI: %q, %v", password, replies, err)
	}
}

func TestQuoteConfig(t *testing.T) {
	for arg, want := range map[string]string{
		"":           `""`,
		"yes":        `"yes"`,
		"a b":        `"a b"`,
		`"`:          `"\""`,
		`\n`:         `"\\n"`,
		"\n\x00\xff": `"\x0a\x00\xff"`,
	} {
		if got := quoteConfig(arg); got != want {
			t.Errorf("quoteConfig(%q) = %s, want %s", arg, got, want)
		}
	}
}

func TestConfigure(t *testing.T) {
	s := &Server{dir: t.TempDir()}
	if err := s.configure([]string{"--port", "1", "--save", "", "--user", "u", "on", ">p w"}, false); err != nil {
		t.Fatal(err)
	}
	want := "port \"1\"\nsave \"\"\nuser \"u\" \"on\" \">p w\"\n"
	if b, err := os.ReadFile(s.argv[0]); err != nil || string(b) != want || len(s.argv) != 1 {
		t.Errorf("argv %q, config %q, %v; want %q", s.argv, b, err, want)
	}
	if err := s.configure([]string{"--sentinel", "monitor", "m", "127.0.0.1", "1", "1"}, true); err != nil {
		t.Fatal(err)
	}
	if len(s.argv) != 2 || s.argv[1] != "--sentinel" || !strings.HasSuffix(s.argv[0], "/sentinel.conf") {
		t.Errorf("sentinel argv %q", s.argv)
	}
	if err := s.configure([]string{"port", "1"}, false); err == nil {
		t.Error("options without a leading --option accepted")
	}
}

func TestRestart(t *testing.T) {
	s := Redis(t)
	port, pid := s.Port(), s.Pid()
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(appendCommand(nil, "SUBSCRIBE", "ch")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "subscriber counted", func() error { return numsub(s, "ch", "1") })

	s.Restart(t)
	if s.Port() != port {
		t.Errorf("port changed from %d to %d", port, s.Port())
	}
	if s.Pid() == pid || s.Pid() == 0 {
		t.Errorf("pid %d after restart, was %d", s.Pid(), pid)
	}
	if err := numsub(s, "ch", "0"); err != nil {
		t.Error(err)
	}
	// The old client sees its connection closed.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 256)
	for {
		if _, err := c.Read(buf); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("old client still connected after Restart")
			}
			break
		}
	}
}

func TestStop(t *testing.T) {
	s := Redis(t)
	pid := s.Pid()
	// A frozen server must still stop.
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	s.Stop()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Stop of a SIGSTOPped server took %v", d)
	}
	if s.Pid() != 0 {
		t.Errorf("Pid() = %d after Stop", s.Pid())
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("process %d still exists after Stop", pid)
	}
	if _, err := s.Do("PING"); err == nil {
		t.Error("PING answered after Stop")
	}
	s.Stop() // a second Stop does nothing
}

func TestRedisPortTaken(t *testing.T) {
	// A server whose port another server holds must not be mistaken for
	// it: ready checks the process id.
	a := Redis(t)
	b := &Server{binary: a.binary, dir: t.TempDir(), port: a.Port()}
	b.logfile = b.dir + "/redis.log"
	if err := b.configure(baseArgs(b.dir, b.port), false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Stop)
	if err := b.start(); !errors.Is(err, errAddrInUse) {
		t.Fatalf("second server on a taken port: %v, want errAddrInUse", err)
	}
}

// numsub reports nil if PUBSUB NUMSUB ch answers want.
func numsub(s *Server, ch, want string) error {
	got, err := s.Do("PUBSUB", "NUMSUB", ch)
	if err != nil {
		return err
	}
	if got != ch+"\n"+want {
		return fmt.Errorf("PUBSUB NUMSUB %s = %q, want %s", ch, got, want)
	}
	return nil
}
