//go:build !linux

package pubsublock

// canPollPeer says that pollPeer cannot tell without Linux's POLLRDHUP: the
// reader goroutine finds a closed connection when it reads, and every hold
// starts its reader at once (see lazyStart).
const canPollPeer = false

// pollPeer cannot tell (see canPollPeer).
func pollPeer(fd uintptr) (hungUp, readable bool) { return false, false }
