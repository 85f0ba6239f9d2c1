package main

import "syscall"

// childAttr makes the kernel kill the demo's children (redis-server, the
// holder processes) should the demo die without cleaning up.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
