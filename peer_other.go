//go:build !linux

package pubsublock

// peerHungUp cannot tell without Linux's POLLRDHUP: the reader goroutine
// finds a closed connection when it reads.
func peerHungUp(fd uintptr) bool { return false }
