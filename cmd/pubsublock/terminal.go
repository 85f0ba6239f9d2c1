//go:build unix

package main

import (
	"os/signal"
	"syscall"
	"unsafe"
)

// terminal is pubsublock's controlling terminal, on which it plays the
// part of a job-control shell for COMMAND: COMMAND, in a process group of
// its own, is given the terminal's foreground when pubsublock has it, so
// that it may read the terminal, and pubsublock takes the foreground back
// when COMMAND stops or exits.
type terminal struct {
	fd int // /dev/tty, opened close-on-exec
}

// openTerminal opens the controlling terminal, or returns nil when there
// is none (cron, a daemon, setsid).
func openTerminal() *terminal {
	fd, err := syscall.Open("/dev/tty", syscall.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	return &terminal{fd: fd}
}

// close closes the terminal; t may be nil.
func (t *terminal) close() {
	if t != nil {
		syscall.Close(t.fd)
	}
}

// foreground returns the terminal's foreground process group, or -1.
func (t *terminal) foreground() int {
	var pgrp int32 // pid_t
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(t.fd), syscall.TIOCGPGRP,
		uintptr(unsafe.Pointer(&pgrp))); errno != 0 {
		return -1
	}
	return int(pgrp)
}

// ours reports whether pubsublock's process group has the foreground.
func (t *terminal) ours() bool {
	return t != nil && t.foreground() == syscall.Getpgrp()
}

// setForeground gives the foreground to process group pgrp. From a
// background process group this takes SIGTTOU ignored (see
// ignoreTerminalStops), as a shell has it.
func (t *terminal) setForeground(pgrp int) error {
	p := int32(pgrp)
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(t.fd), syscall.TIOCSPGRP,
		uintptr(unsafe.Pointer(&p))); errno != 0 {
		return errno
	}
	return nil
}

// takeBack gives the foreground back to pubsublock's process group if
// COMMAND's group pgid has it; t may be nil.
func (t *terminal) takeBack(pgid int) {
	if t != nil && t.foreground() == pgid {
		_ = t.setForeground(syscall.Getpgrp())
	}
}

// ignoreTerminalStops ignores SIGTTOU, which would otherwise stop
// pubsublock when, in the background while COMMAND has the foreground, it
// takes the foreground back or writes to a terminal set to tostop. It is
// called once COMMAND has started: COMMAND inherits ignored signals, and
// must get the default.
func ignoreTerminalStops() {
	signal.Ignore(syscall.SIGTTOU)
}
