package testenv

import (
	"runtime"
	"testing"
	"time"
)

func TestEventuallyReturnsOnceTheConditionHolds(t *testing.T) {
	calls := 0
	Eventually(t, time.Second, "the third call", func() bool { calls++; return calls == 3 })
	if calls != 3 {
		t.Fatalf("condition called %d times, want 3", calls)
	}
}

func TestEventuallyFailsAfterTheDeadline(t *testing.T) {
	ft := &fakeT{TB: t}
	done := make(chan struct{})
	go func() { defer close(done); Eventually(ft, 30*time.Millisecond, "never", func() bool { return false }) }()
	<-done
	if !ft.failed {
		t.Fatal("Eventually did not fail the test after its deadline")
	}
}

// fakeT records Fatalf instead of stopping the real test.
type fakeT struct {
	testing.TB
	failed bool
}

func (f *fakeT) Helper() {}
func (f *fakeT) Fatalf(string, ...any) {
	f.failed = true
	runtimeGoexit()
}

func runtimeGoexit() { runtime.Goexit() }
