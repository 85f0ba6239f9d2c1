package pubsublock

import (
	"syscall"
	"unsafe"
)

// Linux's poll(2) events: the peer closed its side (POLLRDHUP), the
// connection hung up (POLLHUP), or failed (POLLERR).
const (
	pollERR   = 0x8
	pollHUP   = 0x10
	pollRDHUP = 0x2000
)

// peerHungUp polls fd, without waiting, for the peer's close (POLLRDHUP),
// a reset (POLLHUP) or an error (POLLERR); pending data does not hide them.
func peerHungUp(fd uintptr) bool {
	pfd := struct {
		fd             int32
		events, revent int16
	}{fd: int32(fd), events: pollRDHUP}
	n, _, errno := syscall.Syscall(syscall.SYS_POLL, uintptr(unsafe.Pointer(&pfd)), 1, 0)
	return errno == 0 && n == 1 && pfd.revent&(pollRDHUP|pollHUP|pollERR) != 0
}
