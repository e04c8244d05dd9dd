package testenv

import (
	"testing"
	"time"
)

// Eventually polls cond every 10ms until it holds, and fails the test if it still does not after within.
// Tests wait for asynchronous effects with it instead of sleeping.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
