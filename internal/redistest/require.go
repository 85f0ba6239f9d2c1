package redistest

import (
	"context"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// RequireBinary returns the path of the program name (looked up on PATH, or
// used as is when it contains a slash). When it is missing the test is
// skipped with the hint "apt-get install -y <pkg>", or fails with that hint
// when the environment variable CI is "true", so CI never passes by
// skipping.
func RequireBinary(t testing.TB, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		missing(t, name+" not found ("+err.Error()+")", pkg)
	}
	return path
}

// RequirePython returns the path of a python3 that can import portalocker
// and redis, the Python reference client of the lock: /usr/bin/python3
// first (Debian's python3-portalocker and python3-redis install there), then
// python3 on PATH. When none can, the test is skipped, or fails when CI is
// "true", with the hint "apt-get install -y python3-portalocker
// python3-redis".
func RequirePython(t testing.TB) string {
	t.Helper()
	path := findPython()
	if path == "" {
		missing(t, "no python3 can import portalocker and redis", "python3-portalocker python3-redis")
	}
	return path
}

// findPython looks for the interpreter once per test binary: each probe
// starts Python, and the answer does not change during a run.
var findPython = sync.OnceValue(func() string {
	candidates := []string{"/usr/bin/python3"}
	if p, err := exec.LookPath("python3"); err == nil {
		candidates = append(candidates, p)
	}
	for _, p := range candidates {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := exec.CommandContext(ctx, p, "-c", "import portalocker, redis").Run()
		cancel()
		if err == nil {
			return p
		}
	}
	return ""
})

// missing skips the test, or fails it on CI, saying how to install pkg.
func missing(t testing.TB, what, pkg string) {
	t.Helper()
	const format = "redistest: %s; install with: apt-get install -y %s"
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, what, pkg)
	}
	t.Skipf(format, what, pkg)
}
