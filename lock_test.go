package pubsublock

import (
	"context"
	"errors"
	"go/ast"
	"go/build"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock/internal/redistest"
)

func TestAcquireRelease(t *testing.T) {
	servers(t, func(t *testing.T, url string) {
		ctx := context.Background()
		a := newLock(t, "jobs", Config{URL: url, Fencing: true})
		b := newLock(t, "jobs", Config{URL: url, Timeout: 300 * time.Millisecond, Fencing: true})
		if err := a.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		t1 := a.Token()
		if err := b.TryAcquire(ctx); !errors.Is(err, ErrAlreadyLocked) {
			t.Fatalf("TryAcquire while held: %v", err)
		}
		start := time.Now()
		if err := b.Acquire(ctx); !errors.Is(err, ErrAlreadyLocked) {
			t.Fatalf("Acquire while held: %v", err)
		}
		if d := time.Since(start); d < 300*time.Millisecond {
			t.Fatalf("Acquire gave up after %v", d)
		}
		if err := a.Acquire(ctx); !errors.Is(err, ErrHeld) {
			t.Fatalf("second Acquire: %v", err)
		}
		if err := a.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if err := a.Release(ctx); !errors.Is(err, ErrNotHeld) {
			t.Fatalf("second Release: %v", err)
		}
		if err := b.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		if t2 := b.Token(); t2 <= t1 {
			t.Fatalf("token %d after %d", t2, t1)
		}
		if err := b.Release(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// TestACLWithoutYield: under the ACL of earlier versions, without the yield
// window's commands, a waiter woken by the bell still takes the lock at
// once: the bell its refused check took is passed on, and the Client does
// without the window from then on.
func TestACLWithoutYield(t *testing.T) {
	s := redistest.Redis(t, "--user", "locker", "on", ">secret", "resetchannels", "&jobs", "&jobs-*",
		"~jobs-released", "~jobs-wake-*",
		"+subscribe", "+unsubscribe", "+publish", "+pubsub|numsub", "+client|setname",
		"+blpop", "+eval", "+lpush", "+ltrim", "+pexpire", "+type", "+llen", "+lindex",
		"+ping", "+hello", "+select")
	url := "redis://locker:secret@" + s.Addr()
	ctx := context.Background()
	a := newLock(t, "jobs", Config{URL: url})
	if err := a.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	cl := newClient(t, ClientConfig{URL: url})
	bellHandOff(t, s, a, newLock(t, "jobs", Config{Client: cl, CheckInterval: time.Minute, Timeout: -1}))
	if !cl.caps.yield.no() || cl.caps.bell.no() {
		t.Fatalf("yield window refused %v, bell refused %v; want the window given up and the bell kept", cl.caps.yield.no(), cl.caps.bell.no())
	}
}

// TestMinimalACL runs the lock as a user with exactly the permissions the
// package documentation lists, including killing a silent holder, the
// release bell and the wake push that ends a waiter's pause.
func TestMinimalACL(t *testing.T) {
	s := redistest.Redis(t, "--user", "locker", "on", ">secret", "resetchannels", "&jobs", "&jobs-*",
		"~jobs-released", "~jobs-fence", "~jobs-wake-*",
		"+subscribe", "+unsubscribe", "+publish", "+pubsub|numsub", "+client|setname", "+client|list",
		"+client|kill", "+blpop", "+eval", "+lpush", "+ltrim", "+pexpire", "+type", "+llen", "+lindex",
		"+get", "+set", "+pttl", "+ping", "+hello", "+incr", "+select")
	url := "redis://locker:secret@" + s.Addr()
	ctx := context.Background()
	a := newLock(t, "jobs", Config{URL: url, Fencing: true})
	if err := a.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	for _, proto := range []string{"3", "2"} {
		cl := newClient(t, ClientConfig{URL: url + "?protocol=" + proto})
		// The holder is live: a roomy UnavailableTimeout costs nothing,
		// and a stall of its worker on a loaded machine does not get it
		// killed.
		b := newLock(t, "jobs", Config{Client: cl, Fencing: true, UnavailableTimeout: 2 * time.Second,
			CheckInterval: 20 * time.Millisecond, Timeout: 100 * time.Millisecond})
		if alive, err := b.CheckOrKill(ctx); err != nil || !alive {
			t.Fatalf("CheckOrKill of a live holder: %v %v", alive, err)
		}
		if err := b.TryAcquire(ctx); !errors.Is(err, ErrAlreadyLocked) {
			t.Fatalf("TryAcquire: %v", err)
		}
		if err := b.Acquire(ctx); !errors.Is(err, ErrAlreadyLocked) {
			t.Fatalf("Acquire of a held lock: %v", err)
		}
		if cl.caps.bell.no() || cl.caps.wake.no() || !cl.caps.yield.yes() {
			t.Fatalf("protocol %s: bell refused %v, wake refused %v, yield window refused %v", proto, cl.caps.bell.no(), cl.caps.wake.no(), cl.caps.yield.no())
		}
	}
	// Woken by the bell: its pause is far longer than its context.
	bellHandOff(t, s, a, newLock(t, "jobs", Config{URL: url, Fencing: true, CheckInterval: time.Minute, Timeout: -1}))
	// A user without the lock's channel gets a clear permission error.
	other := newLock(t, "other", Config{URL: url})
	err := other.TryAcquire(ctx)
	if err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("lock on a forbidden channel: %v", err)
	}
}

// TestAcquireCanceledNeverReturnsDeadHold cancels Acquire at random moments
// around its round trip: whenever it reports success, the hold must be
// alive.
func TestAcquireCanceledNeverReturnsDeadHold(t *testing.T) {
	s := redistest.Redis(t)
	cl := newClient(t, ClientConfig{URL: s.URL()})
	l := newLock(t, "cancel", Config{Client: cl})
	won := 0
	for i := range 2000 {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(time.Duration(i%400)*time.Microsecond, cancel)
		err := l.Acquire(ctx)
		cancel()
		if err != nil {
			continue
		}
		won++
		select {
		case <-l.Lost():
			t.Fatalf("Acquire returned nil with a lost hold: %v", l.Err())
		default:
		}
		if err := l.Release(context.Background()); err != nil {
			t.Fatalf("Release after a successful Acquire: %v", err)
		}
	}
	t.Logf("%d of 2000 acquisitions won the race with cancellation", won)
}

// TestAcquireDeadlineErrors: a context deadline that passes at any moment
// of an Acquire, the dial included, gives an error matching
// context.DeadlineExceeded.
func TestAcquireDeadlineErrors(t *testing.T) {
	s := redistest.Redis(t)
	failed := 0
	for i := range 400 {
		l := newLock(t, "jobs", Config{URL: s.URL()})
		d := time.Duration(50+i%200) * time.Microsecond
		ctx, cancel := context.WithTimeout(context.Background(), d)
		err := l.Acquire(ctx)
		cancel()
		if err == nil {
			_ = l.Release(context.Background())
			continue
		}
		failed++
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("deadline %v: Acquire = %v, which does not match context.DeadlineExceeded", d, err)
		}
	}
	t.Logf("%d of 400 Acquires ran out of time", failed)
}

// TestAcquireCancelCause: an Acquire canceled with a cause returns an
// error matching both context.Canceled and the cause.
func TestAcquireCancelCause(t *testing.T) {
	s := redistest.Redis(t)
	holder := newLock(t, "jobs", Config{URL: s.URL()})
	if err := holder.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	waiter := newLock(t, "jobs", Config{URL: s.URL(), Timeout: -1})
	ctx, cancel := context.WithCancelCause(context.Background())
	cause := errors.New("shutting down")
	time.AfterFunc(100*time.Millisecond, func() { cancel(cause) })
	err := waiter.Acquire(ctx)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, cause) {
		t.Fatalf("Acquire = %v, want an error matching context.Canceled and the cause", err)
	}
}

// TestAcquireEndsWhenClientCloses: an Acquire waiting on the bell (or
// polling) returns ErrClientClosed when its Client is closed, and does not
// take the lock after that.
func TestAcquireEndsWhenClientCloses(t *testing.T) {
	servers(t, func(t *testing.T, url string) {
		holder := newLock(t, "jobs", Config{URL: url})
		if err := holder.Acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
		cl, err := NewClient(ClientConfig{URL: url})
		if err != nil {
			t.Fatal(err)
		}
		waiter := newLock(t, "jobs", Config{Client: cl, CheckInterval: 300 * time.Millisecond, Timeout: -1})
		got := acquireAsync(context.Background(), waiter)
		awaitBlocked(t, url, 1)
		cl.Close()
		_ = holder.Release(context.Background())
		select {
		case err := <-got:
			if !errors.Is(err, ErrClientClosed) {
				t.Fatalf("Acquire after Client.Close = %v, want ErrClientClosed", err)
			}
		case <-time.After(time.Second):
			t.Fatal("Acquire still waiting a second after Client.Close")
		}
	})
}

// TestLockContext: the context of a hold ends with ErrNotHeld when the
// lock is released, with the loss when it is lost, at once when nothing is
// held, and its goroutine ends with it.
func TestLockContext(t *testing.T) {
	leakCheck(t)
	m := redistest.Miniredis(t)
	ctx := context.Background()
	l := newLock(t, "ctx", Config{Addr: m.Addr()})
	if c, cancel := l.Context(ctx); !errors.Is(context.Cause(c), ErrNotHeld) {
		t.Errorf("Context without a hold: cause %v, want ErrNotHeld", context.Cause(c))
	} else {
		cancel()
	}
	if err := l.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	work, cancel := l.Context(ctx)
	defer cancel()
	if work.Err() != nil {
		t.Fatalf("the context of a live hold ended: %v", context.Cause(work))
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-work.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the context did not end at Release")
	}
	if !errors.Is(context.Cause(work), ErrNotHeld) {
		t.Errorf("cause after Release: %v, want ErrNotHeld", context.Cause(work))
	}
	// A context canceled by its caller ends its goroutine (leakCheck).
	if err := l.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	_, cancel2 := l.Context(ctx)
	cancel2()
	_ = l.Release(ctx)
}

// TestLockCheck: Check confirms a live hold through its connection, and
// reports a hold whose connection was killed as lost, even before the
// worker could have read the news; with nothing held, ErrNotHeld.
func TestLockCheck(t *testing.T) {
	s := redistest.Redis(t)
	ctx := context.Background()
	l := newLock(t, "check", Config{URL: s.URL()})
	if err := l.Check(ctx); !errors.Is(err, ErrNotHeld) {
		t.Errorf("Check without a hold = %v, want ErrNotHeld", err)
	}
	if err := l.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Check(ctx); err != nil {
		t.Fatalf("Check of a live hold = %v", err)
	}
	for _, id := range s.SubscriberIDs(t, "check-lock") {
		mustDo(t, s, "CLIENT", "KILL", "ID", strconv.FormatInt(id, 10))
	}
	if err := l.Check(ctx); !errors.Is(err, ErrLost) {
		t.Fatalf("Check of a killed hold = %v, want ErrLost", err)
	}
	select {
	case <-l.Lost():
	default:
		t.Error("Check found the hold lost, and Lost() is open")
	}
}

// TestLayers guards the package's layers, which the compiler cannot keep
// inside one package: the transport files (conn, cluster, sentinel, crc16,
// client, config) know nothing of the lock's phases, and only lock.go
// touches the Lock's mutable state.
func TestLayers(t *testing.T) {
	fset := token.NewFileSet()
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, name := range names {
		// The package as it builds here: one file of each per-system
		// pair (peer_linux.go, peer_other.go).
		if ok, err := build.Default.MatchFile(".", name); err != nil {
			t.Fatal(err)
		} else if !ok || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	info := &types.Info{Selections: map[*ast.SelectorExpr]*types.Selection{}, Uses: map[*ast.Ident]types.Object{}}
	conf := types.Config{Importer: importer.ForCompiler(fset, "source", nil)}
	pkg, err := conf.Check("github.com/pubsublock/pubsublock", fset, files, info)
	if err != nil {
		t.Fatal(err)
	}
	lock := pkg.Scope().Lookup("Lock").Type()
	phases := []string{"Lock", "hold", "attempt", "spec"}
	transport := []string{"conn.go", "cluster.go", "sentinel.go", "crc16.go", "client.go", "config.go"}
	mutable := []string{"mu", "h", "busy", "ended", "bellFreeAt"}
	for id, obj := range info.Uses {
		file := filepath.Base(fset.Position(id.Pos()).Filename)
		if tn, ok := obj.(*types.TypeName); ok && slices.Contains(phases, tn.Name()) && tn.Parent() == pkg.Scope() &&
			slices.Contains(transport, file) {
			t.Errorf("%v: %s, a transport file, uses %s", fset.Position(id.Pos()), file, tn.Name())
		}
	}
	for sel, s := range info.Selections {
		file := filepath.Base(fset.Position(sel.Pos()).Filename)
		recv := s.Recv()
		if p, ok := recv.(*types.Pointer); ok {
			recv = p.Elem()
		}
		if file != "lock.go" && s.Kind() == types.FieldVal && types.Identical(recv, lock) &&
			slices.Contains(mutable, sel.Sel.Name) {
			t.Errorf("%v: %s touches Lock.%s; only lock.go may", fset.Position(sel.Pos()), file, sel.Sel.Name)
		}
	}
}

// TestErrSeesClosedConnection: Err reports a hold whose connection the
// server closed as lost, whether or not the worker has read the close.
func TestErrSeesClosedConnection(t *testing.T) {
	s := redistest.Redis(t)
	l := newLock(t, "closed", Config{URL: s.URL()})
	if err := l.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, id := range s.SubscriberIDs(t, "closed-lock") {
		mustDo(t, s, "CLIENT", "KILL", "ID", strconv.FormatInt(id, 10))
	}
	waitFor(t, func() bool { return l.Err() != nil })
	select {
	case <-l.Lost():
	case <-time.After(5 * time.Second):
		t.Fatal("Err reported the loss, and Lost() is open")
	}
}
