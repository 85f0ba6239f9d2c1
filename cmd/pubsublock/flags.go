//go:build unix

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"

	"github.com/pubsublock/pubsublock"
)

// defaultURL is used when neither --url nor $REDIS_URL is given.
const defaultURL = "redis://" + pubsublock.DefaultAddr

// defaultKillAfter is the default of --kill-after.
const defaultKillAfter = 10 * time.Second

// defaultShell runs the shell command of -c when $SHELL is not set, as
// flock does.
const defaultShell = "/bin/sh"

// options is what the command line and the environment ask for.
type options struct {
	url                 string
	timeout             time.Duration // negative: wait forever (the default); 0: one try
	nonblock            bool
	conflictExit        int
	checkInterval       time.Duration
	unavailableTimeout  time.Duration
	healthCheckInterval time.Duration // 0 disables the health check
	dialTimeout         time.Duration
	killAfter           time.Duration
	fencing             bool
	shared              bool // a reader's lock (pubsublock.Config.Shared)
	verbose             bool
	version             bool
	help                bool

	// Credentials: a password from --password-file (read by load) wins
	// over one in the URL, which wins over $REDISCLI_AUTH (envAuth).
	passwordFile string
	envAuth      string
	// TLS, as redis-cli names it: files read by load.
	cacert, cert, key, sni string

	status  bool     // "status CHANNEL" rather than a locked run
	channel string   // the lock's channel
	command []string // COMMAND and its ARGS, or the shell and -c STRING
}

// usageError is a bad command line; pubsublock exits with exitUsage.
type usageError struct{ msg string }

// Error returns the message, without the program name.
func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// parseArgs reads the command line (without the program name). getenv
// supplies $REDIS_URL, $REDISCLI_AUTH and $SHELL. Flags stop at the first
// non-flag argument (CHANNEL, or "status") or at "--"; after CHANNEL an
// optional "--" separates COMMAND, which may then start with a dash, or
// "-c STRING" gives a shell command, as flock takes it.
func parseArgs(args []string, getenv func(string) string) (*options, error) {
	o := &options{
		url:                 defaultURL,
		timeout:             -1,
		conflictExit:        exitConflict,
		checkInterval:       pubsublock.DefaultCheckInterval,
		unavailableTimeout:  pubsublock.DefaultUnavailableTimeout,
		healthCheckInterval: pubsublock.DefaultHealthCheckInterval,
		dialTimeout:         pubsublock.DefaultDialTimeout,
		killAfter:           defaultKillAfter,
		envAuth:             getenv("REDISCLI_AUTH"),
	}
	if u := getenv("REDIS_URL"); u != "" {
		o.url = u
	}
	var shellCmd string
	shellSet := false
	fs := flag.NewFlagSet("pubsublock", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported by the caller, with a hint
	fs.Usage = func() {}
	// Each flag is registered under its long name and, where flock has
	// one, its short name, both pointing at the same variable.
	str := func(p *string, names ...string) {
		for _, n := range names {
			fs.StringVar(p, n, *p, "")
		}
	}
	boolean := func(p *bool, names ...string) {
		for _, n := range names {
			fs.BoolVar(p, n, *p, "")
		}
	}
	integer := func(p *int, names ...string) {
		for _, n := range names {
			fs.IntVar(p, n, *p, "")
		}
	}
	duration := func(p *time.Duration, names ...string) {
		for _, n := range names {
			fs.Var(durationFlag{p}, n, "")
		}
	}
	str(&o.url, "url")
	duration(&o.timeout, "w", "timeout")
	boolean(&o.nonblock, "n", "nonblock")
	integer(&o.conflictExit, "E", "conflict-exit-code")
	duration(&o.checkInterval, "check-interval")
	duration(&o.unavailableTimeout, "unavailable-timeout")
	duration(&o.healthCheckInterval, "health-check-interval")
	duration(&o.dialTimeout, "dial-timeout")
	duration(&o.killAfter, "kill-after")
	boolean(&o.fencing, "fencing")
	boolean(&o.shared, "s", "shared")
	str(&o.passwordFile, "password-file")
	str(&o.cacert, "cacert")
	str(&o.cert, "cert")
	str(&o.key, "key")
	str(&o.sni, "sni")
	for _, n := range []string{"c", "command"} {
		fs.Func(n, "", func(s string) error { shellCmd, shellSet = s, true; return nil })
	}
	boolean(&o.verbose, "v", "verbose")
	boolean(&o.version, "version")
	boolean(&o.help, "h", "help")

	if err := fs.Parse(args); err != nil {
		return nil, usagef("%v", err)
	}
	if o.help || o.version {
		return o, nil
	}
	rest := fs.Args()
	// "status" is a subcommand unless "--" came before it, which is how a
	// channel named "status" is locked: pubsublock -- status COMMAND.
	afterDashes := len(rest) < len(args) && args[len(args)-len(rest)-1] == "--"
	if len(rest) > 0 && rest[0] == "status" && !afterDashes {
		o.status = true
		if err := fs.Parse(rest[1:]); err != nil { // flags may follow "status"
			return nil, usagef("%v", err)
		}
		if o.help || o.version {
			return o, nil
		}
		rest = fs.Args()
		if len(rest) != 1 {
			return nil, usagef("status takes one CHANNEL")
		}
		if shellSet {
			return nil, usagef("status takes no command (-c)")
		}
		o.channel = rest[0]
		return o, o.check()
	}
	if len(rest) == 0 {
		return nil, usagef("missing CHANNEL and COMMAND")
	}
	o.channel, o.command = rest[0], rest[1:]
	if len(o.command) > 0 && (o.command[0] == "-c" || o.command[0] == "--command") {
		// flock's form: CHANNEL -c STRING.
		if len(o.command) != 2 || shellSet {
			return nil, usagef("%s takes exactly one shell command, and no other COMMAND", o.command[0])
		}
		shellCmd, shellSet, o.command = o.command[1], true, nil
	}
	if len(o.command) > 0 && o.command[0] == "--" {
		o.command = o.command[1:]
	}
	if shellSet {
		if len(o.command) > 0 {
			return nil, usagef("-c takes the whole command as one string: give no COMMAND after CHANNEL")
		}
		shell := getenv("SHELL")
		if shell == "" {
			shell = defaultShell
		}
		o.command = []string{shell, "-c", shellCmd}
	}
	if len(o.command) == 0 {
		return nil, usagef("missing COMMAND after CHANNEL %q", o.channel)
	}
	return o, o.check()
}

// check refuses values the flags' types cannot, and flags that do not go
// together.
func (o *options) check() error {
	switch {
	case o.conflictExit < 0 || o.conflictExit > 255:
		return usagef("-E/--conflict-exit-code %d: want 0 to 255", o.conflictExit)
	case o.checkInterval <= 0:
		return usagef("--check-interval must be positive")
	case o.unavailableTimeout <= 0:
		return usagef("--unavailable-timeout must be positive")
	case o.dialTimeout <= 0:
		return usagef("--dial-timeout must be positive")
	case (o.cert == "") != (o.key == ""):
		return usagef("--cert and --key go together")
	case (o.cacert != "" || o.cert != "" || o.sni != "") && !tlsURL(o.url):
		return usagef("--cacert, --cert, --key and --sni need a rediss:// URL (or rediss+cluster://, rediss+sentinel://)")
	}
	return nil
}

// durationFlag is a non-negative duration written as Go does ("1m30s",
// "250ms") or, as flock takes it, as a number of seconds ("10", "0.5").
type durationFlag struct{ d *time.Duration }

// String returns the duration as Go writes it.
func (f durationFlag) String() string {
	if f.d == nil {
		return ""
	}
	return f.d.String()
}

// Set parses s as seconds or a Go duration, refusing negative values.
func (f durationFlag) Set(s string) error {
	if secs, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(secs) || secs < 0 || secs > float64(math.MaxInt64)/float64(time.Second) {
			return errors.New("want a non-negative number of seconds or a duration like 1m30s")
		}
		*f.d = time.Duration(secs * float64(time.Second))
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("want a number of seconds (2.5) or a duration (1m30s, 500ms)")
	}
	if d < 0 {
		return errors.New("negative duration")
	}
	*f.d = d
	return nil
}
