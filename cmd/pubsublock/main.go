//go:build unix

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/pubsublock/pubsublock"
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
	}
	srv, err := o.loadServer(os.ReadFile)
	if err != nil {
		fmt.Fprintf(stderr, "pubsublock: %v\n", err)
		return exitUsage
	}
	if o.status {
		return runStatus(o, srv, stdout, stderr)
	}
	return runLocked(o, srv, stderr)
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

// failServer reports an error reaching or using the server, with a hint
// where a TLS setting is the likely cause.
func (r *reporter) failServer(err error, o *options) {
	r.fail(err)
	if h := tlsHint(err, o); h != "" {
		fmt.Fprintln(r.w, "pubsublock: hint: "+h)
	}
}

// tlsHint returns advice for an error that TLS settings may explain, or
// "". The library's errors wrap those of crypto/tls and crypto/x509.
func tlsHint(err error, o *options) string {
	var (
		rec       tls.RecordHeaderError
		unknownCA x509.UnknownAuthorityError
		host      x509.HostnameError
		op        *net.OpError
	)
	switch {
	case !tlsURL(o.url):
		return ""
	case errors.As(err, &unknownCA):
		if o.cacert == "" {
			return "the server's certificate is signed by an authority this system does not trust: " +
				"give its CA certificate with --cacert FILE"
		}
		return "the server's certificate is not signed by the CA of --cacert " + o.cacert
	case errors.As(err, &host):
		return "the server's certificate is not for the host of the URL: --sni NAME checks it against NAME"
	case o.cert == "" && (errors.As(err, &op) && op.Op == "remote error" || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)):
		// TLS 1.3 ends the handshake before the server has checked the
		// client: one that wants a certificate then sends an alert, or
		// just closes the connection.
		return "the server ended the TLS connection: if it wants a client certificate, give --cert FILE and --key FILE"
	case errors.As(err, &rec):
		return "the server does not speak TLS on this port: is it a plain redis:// one?"
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("no answer within --dial-timeout %v, and a plain (non-TLS) Redis port never answers "+
			"a TLS handshake: is this the server's tls-port?", o.dialTimeout)
	}
	return ""
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

// logStatus logs what Status found: the holders, and subscribers that are
// not holders, which a wait cannot get past.
func (r *reporter) logStatus(l *pubsublock.Lock, st pubsublock.Status) {
	holders := "none"
	if st.ListErr != nil {
		holders = fmt.Sprintf("unknown (CLIENT LIST: %v)", st.ListErr)
	}
	for i, h := range st.Holders {
		if i == 0 {
			holders = ""
		} else {
			holders += "; "
		}
		holders += fmt.Sprintf("id=%d addr=%s age=%v", h.ID, h.Addr, h.Age)
	}
	r.event("lock status", "subscribers", st.Subscribers, "holders", holders)
	if n := others(st); n > 0 {
		r.log.Warn(othersNote(l, n))
	}
}

// waitWatch logs, with -v, who holds the lock while pubsublock waits for
// it.
type waitWatch struct {
	r      *reporter
	l      *pubsublock.Lock
	cancel context.CancelFunc
	done   chan struct{}
	last   string // statusKey of the last state logged; the goroutine's until done
}

// watchWait starts a waitWatch: it logs who holds the lock after first
// (once the first tries have pinged the holder), and then whenever that
// changes. stop ends it.
func (r *reporter) watchWait(l *pubsublock.Lock, first time.Duration) *waitWatch {
	w := &waitWatch{r: r, l: l, done: make(chan struct{})}
	if r.log == nil {
		close(w.done)
		w.cancel = func() {}
		return w
	}
	var ctx context.Context
	ctx, w.cancel = context.WithCancel(context.Background())
	go func() {
		defer close(w.done)
		t := time.NewTimer(first)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			w.check(ctx)
			t.Reset(watchEvery)
		}
	}()
	return w
}

// check logs who holds the lock, unless that was logged last.
func (w *waitWatch) check(ctx context.Context) {
	st, err := w.l.Status(ctx)
	if err != nil || !st.Held() {
		return
	}
	if k := statusKey(st); k != w.last {
		w.last = k
		w.r.logStatus(w.l, st)
	}
}

// stop ends the watch.
func (w *waitWatch) stop() {
	w.cancel()
	<-w.done
}

// final logs, after the wait gave up, who holds the lock, unless the watch
// has just said so. It follows stop.
func (w *waitWatch) final() {
	if w.r.log == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	w.check(ctx)
}

// statusKey tells apart the states of the lock that watchWait reports:
// who holds it, and how many subscribers it has, but not for how long.
func statusKey(st pubsublock.Status) string {
	k := fmt.Sprint(st.Subscribers, st.ListErr != nil)
	for _, h := range st.Holders {
		k += fmt.Sprint(" ", h.ID)
	}
	return k
}

// watchEvery is how often watchWait asks who holds the lock.
const watchEvery = 5 * time.Second
