package redistest

import "syscall"

// procAttr makes the kernel kill a server when the test binary dies without
// running its cleanups (a panic, a -timeout), so no redis-server outlives
// the test run.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
