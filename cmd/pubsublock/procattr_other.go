//go:build unix && !linux

package main

import "syscall"

// procAttr puts COMMAND in its own process group, so signals reach its
// children too.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
