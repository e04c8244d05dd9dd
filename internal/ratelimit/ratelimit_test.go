package ratelimit_test

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/internal/ratelimit"
)

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestPerClientBudget(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	l := ratelimit.New(2, ratelimit.WithClock(clk.Now)) // 2/s, bursts of 2
	for i := range 2 {
		if ok, _ := l.Allow("alice"); !ok {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	ok, wait := l.Allow("alice")
	if ok || wait <= 0 || wait > 500*time.Millisecond {
		t.Fatalf("third request at once: allowed=%v, retry after %v; want refused for up to 500ms", ok, wait)
	}
	if ok, _ := l.Allow("bob"); !ok {
		t.Fatal("another client was limited by alice's requests")
	}
	clk.Add(wait)
	if ok, _ := l.Allow("alice"); !ok {
		t.Fatalf("refused after waiting the %v it was told", wait)
	}
}

func TestIdleClientsAreForgotten(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	l := ratelimit.New(1, ratelimit.WithClock(clk.Now), ratelimit.WithMaxClients(3))
	for _, k := range []string{"a", "b", "c"} {
		l.Allow(k)
	}
	clk.Add(time.Second)
	l.Allow("a") // a is now the most recently used
	l.Allow("d") // full: the least recently used (b) goes
	if n := l.Clients(); n != 3 {
		t.Fatalf("%d buckets kept, want at most 3", n)
	}
	if ok, _ := l.Allow("a"); ok {
		t.Fatal("a's bucket was evicted although b was idle longer (a got a fresh budget)")
	}
	clk.Add(2 * time.Minute) // longer than any bucket takes to fill up again
	l.Allow("e")
	if n := l.Clients(); n != 1 {
		t.Fatalf("%d buckets after every other client was idle for 2 minutes, want 1", n)
	}
}

func TestMiddlewareAnswers429WithRetryAfter(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	l := ratelimit.New(0.5, ratelimit.WithClock(clk.Now)) // one every 2 s
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) })
	h := l.Middleware(ok, func(r *http.Request) bool { return r.Method == http.MethodPost }, ratelimit.ClientAddr)
	do := func(method, addr string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, "/v1/orders", nil)
		req.RemoteAddr = addr
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	if rec := do("POST", "10.0.0.1:5000"); rec.Code != http.StatusAccepted {
		t.Fatalf("first: %d", rec.Code)
	}
	rec := do("POST", "10.0.0.1:5001") // same client, another port
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Content-Type") != "application/problem+json" {
		t.Fatalf("second: %d %s, want 429 problem+json", rec.Code, rec.Header().Get("Content-Type"))
	}
	if s, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || s != 2 {
		t.Fatalf("Retry-After %q, want 2", rec.Header().Get("Retry-After"))
	}
	if rec := do("POST", "10.0.0.2:5000"); rec.Code != http.StatusAccepted {
		t.Fatalf("another client: %d", rec.Code)
	}
	if rec := do("GET", "10.0.0.1:5000"); rec.Code != http.StatusAccepted {
		t.Fatalf("a request the limit does not apply to: %d", rec.Code)
	}
}

// BenchmarkAllow measures one Allow over many clients (the cost added to each POST /v1/orders).
func BenchmarkAllow(b *testing.B) {
	l := ratelimit.New(1000)
	keys := make([]string, 5000)
	for i := range keys {
		keys[i] = "sub:" + strconv.Itoa(i)
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		l.Allow(keys[i%len(keys)])
	}
}
