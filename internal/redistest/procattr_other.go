//go:build !linux

package redistest

import "syscall"

// procAttr returns nil: outside Linux a server is stopped only by the
// cleanups.
func procAttr() *syscall.SysProcAttr { return nil }
