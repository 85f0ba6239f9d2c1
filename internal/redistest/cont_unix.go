//go:build unix

package redistest

import (
	"os"
	"syscall"
)

// resume continues a stopped process (SIGCONT), so that it can act on a
// signal sent before.
func resume(p *os.Process) { _ = p.Signal(syscall.SIGCONT) }
