package main

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/bsm/redislock"
	"github.com/go-redsync/redsync/v4"
	redsyncgoredis "github.com/go-redsync/redsync/v4/redis/goredis/v9"
	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
	"github.com/redis/rueidis/rueidislock"

	"github.com/pubsublock/pubsublock"
)

// locker is one contender for a lock, of any peer: it waits in acquire
// until it holds the lock or ctx ends.
type locker struct {
	acquire func(ctx context.Context) error
	release func(ctx context.Context) error
	close   func()
}

// peer is a lock library and how it is set up here.
type peer struct {
	name  string // as in benchstat names
	waits string // how a waiter waits, for the tables
	ttl   string // how a dead holder's lock is freed
	// crashTTL is the lock lifetime used in the crash test (0: not a TTL
	// lock).
	crashTTL time.Duration
	// new makes a contender with its own connections, as a separate
	// process would have. ttl 0 means the peer's default.
	new func(addr, name string, ttl time.Duration) (*locker, error)
}

// lockPeers are the locks compared in the cycle, hand-off and crash
// sections.
var lockPeers = []peer{
	{
		name:  "pubsublock",
		waits: "handed the lock by the release bell (BLPOP, first come first served); tries every CheckInterval 250ms ±25% (default) for crashed holders",
		ttl:   "none: the server drops a dead holder's subscription",
		new: func(addr, name string, _ time.Duration) (*locker, error) {
			cl, err := pubsublock.NewClient(pubsublock.ClientConfig{Addr: addr})
			if err != nil {
				return nil, err
			}
			return pubsublockLocker(cl, name, true)
		},
	},
	{
		name:     "bsm-redislock",
		waits:    "LinearBackoff(100ms), the README's retry example (the default is NoRetry)",
		ttl:      "key TTL 5s (no default; set per Obtain)",
		crashTTL: 5 * time.Second,
		new:      newBsm,
	},
	{
		name:     "redsync",
		waits:    "default: 32 tries, random 50-250ms apart (retried until the deadline here)",
		ttl:      "key expiry 8s (default)",
		crashTTL: 8 * time.Second,
		new:      newRedsync,
	},
	{
		name:     "rueidislock",
		waits:    "default: woken by client-side-caching invalidation of the key",
		ttl:      "KeyValidity 5s (default), extended every 2.5s",
		crashTTL: 5 * time.Second,
		new:      newRueidislock,
	},
}

func findPeer(name string) (peer, bool) {
	for _, p := range lockPeers {
		if p.name == name {
			return p, true
		}
	}
	return peer{}, false
}

// pubsublockLocker locks name through cl; ownClient makes close close cl.
func pubsublockLocker(cl *pubsublock.Client, name string, ownClient bool) (*locker, error) {
	l, err := pubsublock.New(name, pubsublock.Config{Client: cl, Timeout: -1})
	if err != nil {
		return nil, err
	}
	return &locker{
		acquire: l.Acquire,
		release: l.Release,
		close: func() {
			if ownClient {
				cl.Close()
			}
		},
	}, nil
}

// ttlOr returns ttl, or def when ttl is 0.
func ttlOr(ttl, def time.Duration) time.Duration {
	if ttl == 0 {
		return def
	}
	return ttl
}

func newBsm(addr, name string, ttl time.Duration) (*locker, error) {
	ttl = ttlOr(ttl, 5*time.Second)
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	lc := redislock.New(c)
	opt := &redislock.Options{RetryStrategy: redislock.LinearBackoff(100 * time.Millisecond)}
	var held *redislock.Lock
	return &locker{
		acquire: func(ctx context.Context) error {
			l, err := lc.Obtain(ctx, name, ttl, opt)
			held = l
			return err
		},
		release: func(ctx context.Context) error { return held.Release(ctx) },
		close:   func() { c.Close() },
	}, nil
}

func newRedsync(addr, name string, ttl time.Duration) (*locker, error) {
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	var opts []redsync.Option
	if ttl != 0 {
		opts = append(opts, redsync.WithExpiry(ttl))
	}
	m := redsync.New(redsyncgoredis.NewPool(c)).NewMutex(name, opts...)
	return &locker{
		acquire: func(ctx context.Context) error {
			for {
				err := m.LockContext(ctx)
				var taken *redsync.ErrTaken
				if !errors.Is(err, redsync.ErrFailed) && !errors.As(err, &taken) || ctx.Err() != nil {
					return err
				}
				// 32 tries used up (ErrFailed, or ErrTaken when the last
				// try found the lock taken): a real caller would retry too.
			}
		},
		release: func(ctx context.Context) error {
			ok, err := m.UnlockContext(ctx)
			if err == nil && !ok {
				err = errors.New("redsync: unlock failed")
			}
			return err
		},
		close: func() { c.Close() },
	}, nil
}

func newRueidislock(addr, name string, ttl time.Duration) (*locker, error) {
	lk, err := rueidislock.NewLocker(rueidislock.LockerOption{
		ClientOption: rueidis.ClientOption{InitAddress: []string{addr}},
		KeyValidity:  ttl,
	})
	if err != nil {
		return nil, err
	}
	var cancel context.CancelFunc
	return &locker{
		acquire: func(ctx context.Context) error {
			_, c, err := lk.WithContext(ctx, name)
			cancel = c
			return err
		},
		release: func(context.Context) error { cancel(); return nil },
		close:   lk.Close,
	}, nil
}

var nameSeq atomic.Int64

// uniqueName is a fresh lock name, so no measurement sees another's state.
func uniqueName(prefix string) string {
	return fmt.Sprintf("bench-%s-%d-%d", prefix, time.Now().UnixNano()%1e6, nameSeq.Add(1))
}
