//go:build unix

package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/pubsublock/pubsublock"
)

// TestUsageAndDoc: --help and the package documentation name every flag
// and variable, and give the library's defaults.
func TestUsageAndDoc(t *testing.T) {
	b, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	// The doc comment may break a default's parenthesis across lines.
	doc := strings.Join(strings.Fields(regexp.MustCompile(`(?m)^//`).ReplaceAllString(string(b), "")), " ")
	help := strings.Join(strings.Fields(usage), " ")
	for _, want := range []string{
		"--url", "--password-file", "--cacert", "--cert", "--key", "--sni", "--dial-timeout", "-c, --command",
		"-w, --timeout", "-n, --nonblock", "-E, --conflict-exit-code", "--check-interval", "--unavailable-timeout",
		"--health-check-interval", "--kill-after", "--fencing", "-v, --verbose", "--version",
		"REDIS_URL", "REDISCLI_AUTH", "SHELL", "PUBSUBLOCK_CHANNEL", "PUBSUBLOCK_TOKEN",
		"(default " + pubsublock.DefaultCheckInterval.String() + ")",
		"(default " + pubsublock.DefaultUnavailableTimeout.String() + ")",
		"(default " + pubsublock.DefaultHealthCheckInterval.String() + ")",
		"(default " + defaultKillAfter.String() + ")",
		"(default " + pubsublock.DefaultDialTimeout.String() + ")",
		"redis://" + pubsublock.DefaultAddr,
		"64 ", "69 ", "70 ", "75 ", "126 ", "127 ",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("doc.go lacks %q", want)
		}
		if !strings.Contains(help, want) {
			t.Errorf("usage lacks %q", want)
		}
	}
}
