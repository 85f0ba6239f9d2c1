package main

import "syscall"

// procAttr makes the kernel kill a child (redis-server, a crash-test
// holder) when the bench dies without cleaning up.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
