package redistest

import (
	"errors"
	"testing"
	"time"
)

func TestMiniredis(t *testing.T) {
	var addr string
	noLeak(t, "run", func(t *testing.T) {
		m := Miniredis(t)
		addr = m.Addr()
		m.Set("k", "v")
		if v, err := do(addr, "GET", "k"); err != nil || v != "v" {
			t.Fatalf("GET k = %#v, %v", v, err)
		}
	})
	// Closed by the cleanup.
	waitFor(t, 5*time.Second, "miniredis closed", func() error {
		_, err := do(addr, "PING")
		if err == nil {
			return errors.New("miniredis still answers")
		}
		return nil
	})
}
