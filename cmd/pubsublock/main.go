//go:build unix

package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
)

// version is set at link time (-ldflags "-X main.version=v1.2.3"); when it
// is not, the module version recorded by go install is used.
var version = ""

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole command, returning the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseArgs(args, os.Getenv)
	if err != nil {
		fmt.Fprintf(stderr, "pubsublock: %v\nRun 'pubsublock --help' for usage.\n", err)
		return exitUsage
	}
	switch {
	case o.help:
		fmt.Fprint(stdout, usage)
		return exitOK
	case o.version:
		fmt.Fprintf(stdout, "pubsublock %s %s\n", versionString(), runtime.Version())
		return exitOK
	case o.status:
		return runStatus(o, stdout, stderr)
	}
	return runLocked(o, stderr)
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// reporter writes pubsublock's own messages to stderr: errors always, as
// plain lines, and with -v events too, as log/slog text records. The
// library logs to the same handler (lib).
type reporter struct {
	w   io.Writer
	lib *slog.Logger // for Config.Logger; nil unless -v
	log *slog.Logger // lib with the channel attached; nil unless -v
}

func newReporter(w io.Writer, verbose bool, channel string) *reporter {
	r := &reporter{w: w}
	if verbose {
		r.lib = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
		r.log = r.lib.With("channel", channel)
	}
	return r
}

// errorf reports a failure, whatever -v says.
func (r *reporter) errorf(format string, args ...any) {
	fmt.Fprintf(r.w, "pubsublock: "+format+"\n", args...)
}

// fail reports an error, which may come from the library with the
// "pubsublock: " prefix already.
func (r *reporter) fail(err error) {
	fmt.Fprintln(r.w, "pubsublock: "+errText(err))
}

// errText is err's text without the library's "pubsublock: " prefix.
func errText(err error) string {
	return strings.TrimPrefix(err.Error(), "pubsublock: ")
}

// event logs msg with -v.
func (r *reporter) event(msg string, args ...any) {
	if r.log != nil {
		r.log.Info(msg, args...)
	}
}
