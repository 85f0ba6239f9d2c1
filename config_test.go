package pubsublock

import (
	"errors"
	"strings"
	"testing"
)

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
