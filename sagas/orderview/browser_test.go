package orderview_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/sagas/orderview"
)

// chromium returns the path of a headless-capable Chromium. Without one the test fails in CI (CI set), where
// the browser check must not silently vanish, and is skipped elsewhere.
func chromium(t *testing.T) string {
	t.Helper()
	const debian = "/usr/bin/chromium"
	if _, err := os.Stat(debian); err == nil {
		return debian
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	const install = "install it with: apt-get update && apt-get install -y chromium"
	if os.Getenv("CI") != "" {
		t.Fatalf("chromium is required in CI for the timeline page check and %s is missing; %s", debian, install)
	}
	t.Skipf("chromium not found at %s; %s (in CI, with CI set, this test fails instead)", debian, install)
	return ""
}

// runChromium runs headless Chromium with args and a throwaway profile, returning stdout and stderr.
func runChromium(t *testing.T, args ...string) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
		"--disable-sync", "--no-first-run", "--user-data-dir=" + t.TempDir(), "--enable-logging=stderr", "--v=0",
	}
	cmd := exec.CommandContext(ctx, chromium(t), append(base, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\nstderr:\n%s", args, err, stderr.String())
	}
	return stdout.String(), stderr.String()
}

func TestTimelinePageInChromium(t *testing.T) {
	t.Parallel()
	chromium(t) // skip or fail before setting anything up
	f := newFixture(t, orderview.Config{})
	s := failedSaga(t, f)

	dom, log := runChromium(t, "--dump-dom", f.srv.URL+"/orders/"+s.id)
	var types, compensations []string
	for _, m := range entryPattern.FindAllStringSubmatch(dom, -1) {
		types = append(types, m[2])
		if m[1] != "" {
			compensations = append(compensations, m[2])
		}
	}
	if !slices.Equal(types, failedSagaTypes) {
		t.Errorf("rendered timeline %v, want %v\nDOM:\n%s", types, failedSagaTypes, dom)
	}
	if want := []string{"stock.released", "payment.refunded"}; !slices.Equal(compensations, want) {
		t.Errorf("rendered compensations %v, want %v", compensations, want)
	}
	// The browser parsed the escaped id back into text, and ran nothing.
	for _, want := range []string{`id="status">CANCELLED<`, `<dd id="customer">&lt;script&gt;alert("owned")&lt;/script&gt;&amp;co</dd>`} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered DOM lacks %s\nDOM:\n%s", want, dom)
		}
	}
	// A stylesheet the Content-Security-Policy refused would be reported on the console.
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "Content Security Policy") {
			t.Errorf("chromium reports a Content-Security-Policy violation: %s", line)
		}
	}
}
