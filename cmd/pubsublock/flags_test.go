//go:build unix

package main

import (
	"slices"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock"
)

func TestParseArgs(t *testing.T) {
	env := func(url string) func(string) string {
		return func(k string) string {
			if k == "REDIS_URL" {
				return url
			}
			return ""
		}
	}
	o, err := parseArgs([]string{"ch", "cmd", "-n", "--", "x"}, env(""))
	if err != nil {
		t.Fatal(err)
	}
	if o.url != defaultURL || o.timeout >= 0 || o.nonblock || o.conflictExit != 1 || o.killAfter != 10*time.Second ||
		o.channel != "ch" || !slices.Equal(o.command, []string{"cmd", "-n", "--", "x"}) {
		t.Errorf("defaults: %+v", o)
	}
	o, err = parseArgs([]string{"-w", "2.5", "-n", "-E", "3", "-v", "--url", "unix:///s", "--kill-after", "1m",
		"--check-interval=10ms", "--unavailable-timeout", "2", "--health-check-interval", "0", "--fencing",
		"ch", "--", "-cmd"}, env("redis://h"))
	if err != nil {
		t.Fatal(err)
	}
	if o.timeout != 2500*time.Millisecond || !o.nonblock || o.conflictExit != 3 || !o.verbose || o.url != "unix:///s" ||
		o.killAfter != time.Minute || o.checkInterval != 10*time.Millisecond || o.unavailableTimeout != 2*time.Second ||
		o.healthCheckInterval != 0 || !o.fencing || !slices.Equal(o.command, []string{"-cmd"}) {
		t.Errorf("flags: %+v", o)
	}
	cfg := o.config(server{}, nil)
	if cfg.HealthCheckInterval >= 0 || !cfg.FailWhenLocked || cfg.Timeout != 2500*time.Millisecond {
		t.Errorf("config: %+v", cfg)
	}
	o, _ = parseArgs([]string{"--timeout", "3s", "--nonblock", "--conflict-exit-code", "9", "--verbose", "ch", "c"}, env("redis://h"))
	if o.timeout != 3*time.Second || !o.nonblock || o.conflictExit != 9 || !o.verbose || o.url != "redis://h" {
		t.Errorf("long names: %+v", o)
	}
	if cfg := o.config(server{}, nil); cfg.Timeout != 3*time.Second {
		t.Errorf("config: %+v", cfg)
	}
	o, _ = parseArgs([]string{"ch", "c"}, env(""))
	if cfg := o.config(server{}, nil); cfg.Timeout >= 0 || cfg.FailWhenLocked {
		t.Errorf("default wait: %+v", cfg)
	}
	o, _ = parseArgs([]string{"-w", "0", "ch", "c"}, env(""))
	if cfg := o.config(server{}, nil); !cfg.FailWhenLocked {
		t.Errorf("-w 0: %+v", cfg)
	}

	o, err = parseArgs([]string{"-v", "status", "--url", "redis://x", "ch"}, env(""))
	if err != nil || !o.status || o.channel != "ch" || !o.verbose || o.url != "redis://x" {
		t.Errorf("status: %+v, %v", o, err)
	}
	o, err = parseArgs([]string{"--", "status", "c"}, env(""))
	if err != nil || o.status || o.channel != "status" {
		t.Errorf("channel named status: %+v, %v", o, err)
	}
	o, err = parseArgs([]string{"ch", "status"}, env(""))
	if err != nil || o.status || !slices.Equal(o.command, []string{"status"}) {
		t.Errorf("command named status: %+v, %v", o, err)
	}
}

func TestParseArgsServer(t *testing.T) {
	env := map[string]string{"REDIS_URL": "rediss://h", "REDISCLI_AUTH": "pw", "SHELL": "/bin/zsh"}
	o, err := parseArgs([]string{"--dial-timeout", "2", "--password-file", "f", "--cacert", "ca", "--cert", "c",
		"--key", "k", "--sni", "n", "ch", "-c", "echo hi"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if o.dialTimeout != 2*time.Second || o.passwordFile != "f" || o.envAuth != "pw" || o.cacert != "ca" ||
		o.cert != "c" || o.key != "k" || o.sni != "n" || !slices.Equal(o.command, []string{"/bin/zsh", "-c", "echo hi"}) {
		t.Errorf("%+v", o)
	}
	if cfg := o.config(server{password: "x"}, nil); cfg.DialTimeout != 2*time.Second || cfg.Password != "x" || cfg.URL != "rediss://h" {
		t.Errorf("config: %+v", cfg)
	}
	o, err = parseArgs([]string{"ch", "-c", "true"}, func(string) string { return "" })
	if err != nil || !slices.Equal(o.command, []string{"/bin/sh", "-c", "true"}) ||
		o.dialTimeout != pubsublock.DefaultDialTimeout || o.checkInterval != pubsublock.DefaultCheckInterval ||
		o.unavailableTimeout != pubsublock.DefaultUnavailableTimeout ||
		o.healthCheckInterval != pubsublock.DefaultHealthCheckInterval {
		t.Errorf("defaults: %+v, %v", o, err)
	}
	for _, args := range [][]string{
		{"--url", "redis://h", "--sni", "n", "ch", "true"},
		{"--url", "unix:///s", "--cacert", "ca", "ch", "true"},
		{"--url", "rediss://h", "--key", "k", "ch", "true"},
		{"--dial-timeout", "0", "ch", "true"},
	} {
		if _, err := parseArgs(args, func(string) string { return "" }); err == nil {
			t.Errorf("parseArgs(%q) accepted", args)
		}
	}
}

func TestDurationFlag(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"0": 0, "10": 10 * time.Second, "0.25": 250 * time.Millisecond, "1m30s": 90 * time.Second, "250ms": 250 * time.Millisecond,
	} {
		var d time.Duration
		if err := (durationFlag{&d}).Set(in); err != nil || d != want {
			t.Errorf("Set(%q) = %v, %v; want %v", in, d, err, want)
		}
	}
	for _, in := range []string{"", "-1", "-1s", "NaN", "Inf", "1e300", "soon", "5 s"} {
		var d time.Duration
		if err := (durationFlag{&d}).Set(in); err == nil {
			t.Errorf("Set(%q) = %v, want an error", in, d)
		}
	}
}
