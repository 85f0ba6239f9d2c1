package redistest

import (
	"net"
	"testing"
)

// freePorts returns n distinct TCP ports on 127.0.0.1 that were free a
// moment ago. The kernel may hand one to someone else before the caller
// binds it, so callers that start a server retry with new ports when the
// bind fails.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	for range n {
		// Keep each listener open until all are chosen, so the ports differ.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("redistest: no free port on 127.0.0.1: %v", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}
