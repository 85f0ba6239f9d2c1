// Command contender is one contender process of the chaos test (package
// chaos, which builds and runs it). Its workers take the lock over and over
// and, while they hold it, work in the oracle's critical section (package
// oracle), printing an oracle.Event line for each thing they do.
//
// Before each step of its work a worker checks l.Err(), as a careful user
// of the lock does, and stops working once its hold is lost; a goroutine
// per hold prints "told" the moment Lost() fires.
//
// Standard input steers it: a line "long" makes the next hold of any
// worker a long one (the driver wants a holder that stays inside while it
// freezes or cuts it off); end of input makes every worker finish its hold
// and the process exit.
//
// With -mode nolock it takes no lock at all and enters the critical section
// anyway: the oracle's self-test, which must see overlaps.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pubsublock/pubsublock"
	"github.com/pubsublock/pubsublock/internal/chaos/oracle"
)

func main() {
	var (
		id          = flag.String("id", "", "process name and incarnation, \"g1.0\": the prefix of its holds")
		url         = flag.String("url", "", "the lock server's URL (through the test's proxy); ?protocol=2 for RESP2")
		oracleAddr  = flag.String("oracle", "", "the oracle server's host:port")
		channel     = flag.String("channel", "chaos", "the lock channel")
		shared      = flag.Bool("shared", false, "one pubsublock.Client shared by the workers' Locks (else each Lock gets Config{URL} only)")
		workers     = flag.Int("workers", 1, "workers, each with its own Lock")
		mode        = flag.String("mode", "acquire", "acquire (Acquire), try (TryAcquire), or nolock (no lock: the self-test)")
		steps       = flag.Int("steps", 3, "steps of a short hold's critical section")
		step        = flag.Duration("step", 300*time.Microsecond, "pause before each step of a short hold")
		long        = flag.Duration("long", 2500*time.Millisecond, "how long a long hold works")
		longStep    = flag.Duration("long-step", 50*time.Millisecond, "pause before each step of a long hold")
		idle        = flag.Duration("idle", 5*time.Millisecond, "longest pause between holds (random)")
		check       = flag.Duration("check", 50*time.Millisecond, "Config.CheckInterval")
		unavailable = flag.Duration("unavailable", 500*time.Millisecond, "Config.UnavailableTimeout")
		health      = flag.Duration("health", 500*time.Millisecond, "Config.HealthCheckInterval")
		timeout     = flag.Duration("timeout", 2*time.Second, "Config.Timeout (acquire mode)")
		seed        = flag.Uint64("seed", 1, "seed of the pauses")
		logLevel    = flag.String("log", "info", "the lock's log records, to standard error, from this level (debug, info, warn), or off")
	)
	flag.Parse()
	if *id == "" || *oracleAddr == "" || (*mode != "nolock" && *url == "") {
		fmt.Fprintln(os.Stderr, "contender: -id, -oracle and -url are required")
		os.Exit(2)
	}

	p := &proc{out: oracle.NewPrinter(os.Stdout), stop: make(chan struct{})}
	cfg := pubsublock.Config{
		CheckInterval:       *check,
		UnavailableTimeout:  *unavailable,
		HealthCheckInterval: *health,
		Timeout:             *timeout,
		Fencing:             true,
	}
	if *logLevel != "off" {
		var level slog.Level
		if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
			fmt.Fprintln(os.Stderr, "contender: -log:", err)
			os.Exit(2)
		}
		// Kills of silent holders and losses, kept with the run's logs.
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("id", *id)
	}
	if *shared {
		cl, err := pubsublock.NewClient(pubsublock.ClientConfig{URL: *url})
		if err != nil {
			fmt.Fprintln(os.Stderr, "contender:", err)
			os.Exit(2)
		}
		defer cl.Close()
		cfg.Client = cl
	} else {
		cfg.URL = *url
	}

	ws := make([]*worker, *workers)
	for i := range ws {
		w := &worker{
			p: p, prefix: fmt.Sprintf("%s.%d.", *id, i), mode: *mode,
			oracle: oracle.NewClient(*oracleAddr),
			steps:  *steps, step: *step, long: *long, longStep: *longStep, idle: *idle,
			rnd: rand.New(rand.NewPCG(*seed, uint64(i))),
		}
		if *mode != "nolock" {
			l, err := pubsublock.New(*channel, cfg)
			if err != nil {
				fmt.Fprintln(os.Stderr, "contender:", err)
				os.Exit(2)
			}
			w.lock = l
		}
		ws[i] = w
	}

	p.out.Print(oracle.Event{Kind: oracle.Start, Time: oracle.Now()})
	go p.readInput()
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Go(w.run)
	}
	wg.Wait()
	p.out.Print(oracle.Event{Kind: oracle.Exit, Time: oracle.Now()})
}

// proc is what the workers of the process share.
type proc struct {
	out      *oracle.Printer
	stop     chan struct{} // closed at the end of standard input
	wantLong atomic.Bool   // the next hold of any worker is to be long
}

// readInput follows the driver's lines on standard input.
func (p *proc) readInput() {
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if sc.Text() == "long" {
			p.wantLong.Store(true)
		}
	}
	close(p.stop)
}

func (p *proc) stopped() bool {
	select {
	case <-p.stop:
		return true
	default:
		return false
	}
}

// worker takes one Lock again and again.
type worker struct {
	p      *proc
	prefix string // of its holds' names
	mode   string
	lock   *pubsublock.Lock // nil in nolock mode
	oracle *oracle.Client

	steps          int
	step           time.Duration
	long, longStep time.Duration
	idle           time.Duration
	rnd            *rand.Rand
}

func (w *worker) run() {
	defer w.oracle.Close()
	for seq := 0; !w.p.stopped(); seq++ {
		hold := w.prefix + fmt.Sprint(seq)
		if w.mode == "nolock" {
			w.hold(hold, nil, 0)
		} else if !w.acquire(hold) {
			continue
		}
		time.Sleep(time.Duration(w.rnd.Int64N(int64(w.idle) + 1)))
	}
}

// acquire tries to take the lock as the worker's mode says, and holds it
// when it gets it. It reports whether it did.
func (w *worker) acquire(hold string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	if w.mode == "try" {
		err = w.lock.TryAcquire(ctx)
	} else {
		err = w.lock.Acquire(ctx)
	}
	switch {
	case err == nil:
		w.hold(hold, w.lock, w.lock.Token())
		return true
	case errors.Is(err, pubsublock.ErrAlreadyLocked):
		if w.mode == "try" {
			time.Sleep(time.Duration(2+w.rnd.IntN(18)) * time.Millisecond)
		}
	default:
		w.p.out.Print(oracle.Event{Kind: oracle.AcquireError, Time: oracle.Now(), Err: err.Error()})
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// hold does one hold's work in the critical section and releases the lock
// (l is nil in nolock mode).
func (w *worker) hold(hold string, l *pubsublock.Lock, token int64) {
	out := w.p.out
	long := w.p.wantLong.CompareAndSwap(true, false)
	out.Print(oracle.Event{Kind: oracle.Acquired, Hold: hold, Time: oracle.Now(), Token: token, Long: long})
	lost := func() error { return nil }
	var watched chan struct{}
	if l != nil {
		lost = l.Err
		// Print "told" the moment the hold is lost. Once Release has begun
		// Err no longer says ErrLost; Release's own error does.
		watched = make(chan struct{})
		ch := l.Lost()
		go func() {
			defer close(watched)
			<-ch
			if err := l.Err(); errors.Is(err, pubsublock.ErrLost) {
				out.Print(oracle.Event{Kind: oracle.Told, Hold: hold, Time: oracle.Now(), Err: err.Error()})
			}
		}()
	}

	w.critical(hold, token, long, lost)

	if l != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := l.Release(ctx)
		cancel()
		ev := oracle.Event{Kind: oracle.Released, Hold: hold, Time: oracle.Now()}
		if err != nil {
			ev.Err, ev.Lost = err.Error(), errors.Is(err, pubsublock.ErrLost)
		}
		out.Print(ev)
		<-watched
	}
}

// critical enters the oracle's critical section, works in it, and leaves,
// checking before each step, entering included, that the hold is not lost.
func (w *worker) critical(hold string, token int64, long bool, lost func() error) {
	out := w.p.out
	checked := oracle.Now()
	if err := lost(); err != nil {
		out.Print(oracle.Event{Kind: oracle.Abort, Hold: hold, Time: checked, Err: err.Error()})
		return
	}
	e, err := w.oracle.Enter(hold, token)
	if err != nil {
		out.Print(oracle.Event{Kind: oracle.OracleError, Hold: hold, Time: oracle.Now(), Err: err.Error()})
		w.leave(hold, 0)
		return
	}
	out.Print(oracle.Event{Kind: oracle.Enter, Hold: hold, Time: e.Time, Token: token, Long: long,
		N: e.N, Others: e.Others, Regressed: e.Regressed, Checked: checked})
	steps, pause := w.steps, w.step
	if long {
		steps, pause = int(w.long/w.longStep), w.longStep
	}
	done := 0
	for i := 1; i <= steps; i++ {
		time.Sleep(pause)
		checked := oracle.Now()
		if err := lost(); err != nil {
			out.Print(oracle.Event{Kind: oracle.Abort, Hold: hold, Time: checked, Step: i, Err: err.Error()})
			break
		}
		s, err := w.oracle.Step(hold, token)
		if err != nil {
			out.Print(oracle.Event{Kind: oracle.OracleError, Hold: hold, Time: oracle.Now(), Step: i, Err: err.Error()})
			break
		}
		done++
		if s.Superseded || s.Refused {
			out.Print(oracle.Event{Kind: oracle.StepSeen, Hold: hold, Time: s.Time, Step: i,
				Superseded: s.Superseded, Refused: s.Refused, Checked: checked})
		}
	}
	w.leave(hold, done)
}

// leave leaves the critical section; it is safe when the hold never got
// in.
func (w *worker) leave(hold string, done int) {
	t, err := w.oracle.Leave(hold)
	if err != nil {
		w.p.out.Print(oracle.Event{Kind: oracle.OracleError, Hold: hold, Time: oracle.Now(), Err: err.Error()})
		return
	}
	w.p.out.Print(oracle.Event{Kind: oracle.Leave, Hold: hold, Time: t, Step: done})
}
