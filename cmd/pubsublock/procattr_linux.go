package main

import "syscall"

// procAttr puts COMMAND in its own process group, so signals reach its
// children too, and has the kernel send it SIGTERM should pubsublock die
// without cleaning up (SIGKILL, OOM): its lock is gone then.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
