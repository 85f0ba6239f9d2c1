package pubsublock

import "errors"

// Errors returned by Lock methods; test for them with errors.Is.
var (
	// ErrAlreadyLocked: the lock is held elsewhere and was not obtained in
	// time (or at the first try, with TryAcquire or FailWhenLocked).
	ErrAlreadyLocked = errors.New("pubsublock: already locked")
	// ErrNotHeld: Release on a Lock that does not hold the lock.
	ErrNotHeld = errors.New("pubsublock: not held")
	// ErrLost: the hold ended without Release: the connection died, was
	// killed by a contender, the server restarted, or the health check went
	// unanswered. The wrapped error says which.
	ErrLost = errors.New("pubsublock: lock lost")
	// ErrHeld: Acquire on a Lock that already holds the lock, or while
	// another Acquire on it runs.
	ErrHeld = errors.New("pubsublock: already held by this Lock")
)

// ErrKillUnsupported is returned when a silent holder must be killed but
// the server has no CLIENT LIST or CLIENT KILL (miniredis, or an ACL user
// without them).
var ErrKillUnsupported = errors.New("pubsublock: server cannot list or kill clients")

// ErrClientClosed is returned when a closed Client is asked for a
// connection.
var ErrClientClosed = errors.New("pubsublock: client closed")

// ErrUnknownSubscriber is returned by CheckOrKill when the lock's channel
// is taken by a silent subscriber that is not named like a holder (a plain
// SUBSCRIBE of the channel, say): it keeps the lock taken, and nothing may
// kill it.
var ErrUnknownSubscriber = errors.New("pubsublock: the channel has a subscriber not named like a holder, which is not killed")
