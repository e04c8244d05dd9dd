package customer

import (
	"sync"
	"time"
)

// throttle slows down guessing one account's password: after freeFailures wrong passwords for an email
// in a row, that email is refused for a delay that doubles with each further failure, up to maxDelay. It
// keys on the email as given, whether or not such a customer exists, so it tells nothing about which
// emails are registered. At most maxEntries emails are remembered: stale ones are forgotten first, then
// the least recently failed, so memory stays bounded whatever an attacker sends.
type throttle struct {
	freeFailures int
	baseDelay    time.Duration
	maxDelay     time.Duration
	forgetAfter  time.Duration // a record this long without a failure is forgotten
	maxEntries   int
	now          func() time.Time

	mu      sync.Mutex
	entries map[string]*failures
}

type failures struct {
	count int
	until time.Time // refused before this
	last  time.Time
}

func newThrottle() *throttle {
	return &throttle{
		freeFailures: 3, baseDelay: time.Second, maxDelay: 5 * time.Minute, forgetAfter: 15 * time.Minute,
		maxEntries: 10_000, now: time.Now, entries: map[string]*failures{},
	}
}

// allow reports whether key may try now, or how long it must wait.
func (t *throttle) allow(key string) (bool, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f, ok := t.entries[key]
	if !ok {
		return true, 0
	}
	if wait := f.until.Sub(t.now()); wait > 0 {
		return false, wait
	}
	return true, 0
}

// fail records a wrong password for key.
func (t *throttle) fail(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	f, ok := t.entries[key]
	if !ok {
		t.makeRoom(now)
		f = &failures{}
		t.entries[key] = f
	}
	f.count++
	f.last = now
	if extra := f.count - t.freeFailures; extra >= 0 {
		delay := t.maxDelay
		if extra < 20 && t.baseDelay<<extra < t.maxDelay {
			delay = t.baseDelay << extra
		}
		f.until = now.Add(delay)
	}
}

// succeed forgets key's failures.
func (t *throttle) succeed(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.entries, key)
}

// size is the number of emails remembered.
func (t *throttle) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.entries)
}

// makeRoom, with t.mu held and the map full, forgets stale records and then, if still full, the record
// whose last failure is oldest.
func (t *throttle) makeRoom(now time.Time) {
	if len(t.entries) < t.maxEntries {
		return
	}
	for k, f := range t.entries {
		if now.Sub(f.last) > t.forgetAfter && !now.Before(f.until) {
			delete(t.entries, k)
		}
	}
	for len(t.entries) >= t.maxEntries {
		oldest, first := "", true
		for k, f := range t.entries {
			if first || f.last.Before(t.entries[oldest].last) {
				oldest, first = k, false
			}
		}
		delete(t.entries, oldest)
	}
}
