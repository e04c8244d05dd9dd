// Package ratelimit limits how often each client may do something: one token bucket per client key
// (golang.org/x/time/rate), kept in a bounded map from which idle buckets are evicted.
package ratelimit

import (
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/choreo-dev/choreo/internal/httpapi"
)

// DefaultMaxClients is how many clients' buckets are kept at most.
const DefaultMaxClients = 10_000

// Limiter allows each client perSecond requests a second on average, in bursts of up to ceil(perSecond).
type Limiter struct {
	limit      rate.Limit
	burst      int
	idle       time.Duration // a bucket unused this long is full again, so forgetting it changes nothing
	maxClients int
	now        func() time.Time

	mu        sync.Mutex
	clients   map[string]*client
	lastSweep time.Time
}

type client struct {
	bucket *rate.Limiter
	seen   time.Time
}

// Option adjusts a Limiter.
type Option func(*Limiter)

// WithMaxClients bounds the number of buckets kept (default DefaultMaxClients).
func WithMaxClients(n int) Option { return func(l *Limiter) { l.maxClients = max(1, n) } }

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) Option { return func(l *Limiter) { l.now = now } }

// New returns a limiter of perSecond requests a second per client; perSecond must be positive.
func New(perSecond float64, opts ...Option) *Limiter {
	burst := max(1, int(math.Ceil(perSecond)))
	l := &Limiter{
		limit: rate.Limit(perSecond), burst: burst, maxClients: DefaultMaxClients, now: time.Now,
		idle:    max(time.Minute, time.Duration(float64(burst)/perSecond*float64(time.Second))),
		clients: map[string]*client{},
	}
	for _, o := range opts {
		o(l)
	}
	return l
}

// Allow takes one request of key's budget; when there is none left it reports how long until there is.
func (l *Limiter) Allow(key string) (ok bool, retryAfter time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	c, found := l.clients[key]
	if !found {
		l.makeRoom(now)
		c = &client{bucket: rate.NewLimiter(l.limit, l.burst)}
		l.clients[key] = c
	}
	c.seen = now
	if c.bucket.AllowN(now, 1) {
		return true, 0
	}
	r := c.bucket.ReserveN(now, 1)
	defer r.CancelAt(now)
	return false, r.DelayFrom(now)
}

// makeRoom forgets idle buckets (at most once per idle period, or when full) and, if the map is still
// full, the least recently used one.
func (l *Limiter) makeRoom(now time.Time) {
	full := len(l.clients) >= l.maxClients
	if !full && now.Sub(l.lastSweep) < l.idle {
		return
	}
	l.lastSweep = now
	for k, c := range l.clients {
		if now.Sub(c.seen) >= l.idle {
			delete(l.clients, k)
		}
	}
	if len(l.clients) < l.maxClients {
		return
	}
	oldest, first := "", true
	for k, c := range l.clients {
		if first || c.seen.Before(l.clients[oldest].seen) {
			oldest, first = k, false
		}
	}
	delete(l.clients, oldest)
}

// Clients is the number of buckets kept.
func (l *Limiter) Clients() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.clients)
}

// Middleware limits the requests for which applies is true, per key(r); over the limit it answers 429
// problem+json with Retry-After in whole seconds.
func (l *Limiter) Middleware(next http.Handler, applies func(*http.Request) bool, key func(*http.Request) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if applies(r) {
			if ok, wait := l.Allow(key(r)); !ok {
				w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
				httpapi.WriteProblem(w, r, httpapi.NewProblem(http.StatusTooManyRequests, "too many requests from this client; retry after the Retry-After seconds"))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// ClientAddr is the host part of r's remote address. Forwarding headers are not trusted: anyone can send
// them.
func ClientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
