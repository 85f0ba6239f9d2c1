package pubsublock

import (
	"errors"
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		url           string
		network, addr string
		user, pass    string
		db            int
		tls, resp2    bool
	}{
		{url: "redis://localhost", network: "tcp", addr: "localhost:6379"},
		{url: "redis://127.0.0.1:7000/3", network: "tcp", addr: "127.0.0.1:7000", db: 3},
		{url: "redis://u:p%40ss@h:1?db=4", network: "tcp", addr: "h:1", user: "u", pass: "p@ss", db: 4},
		{url: "redis://secret@h", network: "tcp", addr: "h:6379", pass: "secret"},
		{url: "redis://:secret@h", network: "tcp", addr: "h:6379", pass: "secret"},
		{url: "rediss://h:6380", network: "tcp", addr: "h:6380", tls: true},
		{url: "redis://[::1]:7000", network: "tcp", addr: "[::1]:7000"},
		{url: "redis://h?protocol=2", network: "tcp", addr: "h:6379", resp2: true},
		{url: "unix:///run/redis.sock?db=2", network: "unix", addr: "/run/redis.sock", db: 2},
		{url: "unix://u:pw@/tmp/r.sock", network: "unix", addr: "/tmp/r.sock", user: "u", pass: "pw"},
	} {
		dc, err := ClientConfig{URL: tc.url}.dialConfig()
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		if dc.network != tc.network || dc.addr != tc.addr || dc.username != tc.user || dc.password != tc.pass ||
			dc.db != tc.db || (dc.tls != nil) != tc.tls || dc.resp2 != tc.resp2 {
			t.Errorf("%s: got %+v", tc.url, dc)
		}
	}
}

func TestBadURL(t *testing.T) {
	for _, u := range []string{
		"http://h", "redis://", "redis://h:notaport", "redis://h:99999", "redis://h/x", "redis://h/1?db=2",
		"redis://h?db=-1", "redis://h?timeout=1", "redis://h?protocol=4", "unix://", "redis://user:hunter2@h:p0rt",
		"redis://user:hunter2@[::1", "%%", "redis://h?db=%zz",
	} {
		_, err := ClientConfig{URL: u}.dialConfig()
		if err == nil {
			t.Errorf("%s: no error", u)
			continue
		}
		if !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v does not match ErrConfig", u, err)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: error reveals the password: %v", u, err)
		}
	}
}

func TestNewRejects(t *testing.T) {
	for _, tc := range []struct {
		channel string
		cfg     Config
	}{
		{"", Config{}},
		{"has space", Config{}},
		{"new\nline", Config{}},
		{"tab\t", Config{}},
		{"caf\xc3\xa9", Config{}},
		{strings.Repeat("x", 1025), Config{}},
		{"ok", Config{CheckInterval: -1}},
		{"ok", Config{UnavailableTimeout: -1}},
		{"ok", Config{DialTimeout: -1}},
		{"ok", Config{DB: -1}},
		{"ok", Config{URL: "redis://h", Addr: "h:1"}},
		{"ok", Config{Addr: "no-port"}},
		{"ok", Config{Client: &Client{}, URL: "redis://h"}},
	} {
		if _, err := New(tc.channel, tc.cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("New(%q, %+v) = %v, want ErrConfig", tc.channel, tc.cfg, err)
		}
	}
	if _, err := NewClient(ClientConfig{ClientName: "a b"}); !errors.Is(err, ErrConfig) {
		t.Errorf("ClientName with a space: %v", err)
	}
	l, err := New("a{b}c-!~", Config{})
	if err != nil {
		t.Fatal(err)
	}
	if l.ClientName() != "a{b}c-!~-lock" {
		t.Errorf("ClientName = %q", l.ClientName())
	}
}
