package pubsublock

import (
	"syscall"
	"unsafe"
)

// Linux's poll(2) events: data to read (POLLIN), the peer closed its side
// (POLLRDHUP), the connection hung up (POLLHUP), or failed (POLLERR).
const (
	pollIN    = 0x1
	pollERR   = 0x8
	pollHUP   = 0x10
	pollRDHUP = 0x2000
)

// canPollPeer says that pollPeer reports a peer's close and unread data.
const canPollPeer = true

// pollPeer polls fd, without waiting, for the peer's close (POLLRDHUP), a
// reset (POLLHUP) or an error (POLLERR), which pending data does not hide;
// and for data waiting to be read (POLLIN).
func pollPeer(fd uintptr) (hungUp, readable bool) {
	pfd := struct {
		fd             int32
		events, revent int16
	}{fd: int32(fd), events: pollRDHUP | pollIN}
	n, _, errno := syscall.Syscall(syscall.SYS_POLL, uintptr(unsafe.Pointer(&pfd)), 1, 0)
	if errno != 0 || n != 1 {
		return false, false // nothing, or cannot tell (see conn.peerState)
	}
	return pfd.revent&(pollRDHUP|pollHUP|pollERR) != 0, pfd.revent&pollIN != 0
}
