package customer

import (
	"fmt"
	"testing"
	"time"
)

func TestThrottleBacksOffAndStaysBounded(t *testing.T) {
	now := time.Unix(0, 0)
	th := newThrottle()
	th.now = func() time.Time { return now }
	th.maxEntries = 100
	for i := 1; i <= 5; i++ {
		th.fail("ada")
		ok, wait := th.allow("ada")
		if want := i >= th.freeFailures; ok == want {
			t.Fatalf("after %d failures allowed=%v", i, ok)
		}
		if i >= th.freeFailures && wait != th.baseDelay<<(i-th.freeFailures) {
			t.Fatalf("after %d failures wait %v", i, wait)
		}
	}
	now = now.Add(time.Hour)
	if ok, _ := th.allow("ada"); !ok {
		t.Fatal("still refused after the delay")
	}
	th.succeed("ada")
	for i := range 1000 {
		th.fail(fmt.Sprintf("guess-%d@example.com", i))
	}
	if n := th.size(); n > th.maxEntries {
		t.Fatalf("%d emails remembered, want at most %d", n, th.maxEntries)
	}
	if ok, _ := th.allow("guess-999@example.com"); !ok {
		t.Fatal("one failure refuses the email")
	}
}
