// Package console is choreo's built-in web console under /ui: the choreography as a live graph with rates,
// lag and saga outcomes; the topics and consumer groups; a message browser with a live tail; the dead
// letters with their redrive; and each saga as swimlanes. The pages are static HTML, CSS and JavaScript
// embedded in the binary; they read JSON from /ui/api and follow live updates over Server-Sent Events.
//
// The console reads Kafka without joining or committing any consumer group (kafkaadmin.Inspector), and
// never scans a whole topic for a request: topic and group state is sampled in the background and served
// from memory, and every read of messages is bounded.
package console

import (
	"context"
	"crypto/subtle"
	"embed"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/choreo-dev/choreo/internal/httpapi"
	"github.com/choreo-dev/choreo/internal/kafkaadmin"
	"github.com/choreo-dev/choreo/sagas/orderview"
)

//go:embed web
var webFiles embed.FS

// Service is a hosted unit as the console sees it: its name is its consumer group (before the namespace).
type Service struct {
	Name     string
	Consumes []string // topics its consumer group reads, without the namespace
}

// OrderLister lists orders of the read model, newest first (orderview.Service.List, or its HTTP API).
type OrderLister func(ctx context.Context, f orderview.Filter) (orderview.Page, error)

// Redriver hands the dead letters of a service back to it and returns how many it redrove.
type Redriver func(ctx context.Context, service string) (int, error)

// Config configures the console.
type Config struct {
	Brokers []string
	// Namespace prefixes every topic and consumer group name (host.Options.Namespace); the console shows
	// only the topics and groups that carry it.
	Namespace string
	Services  []Service
	// Orders lists the read model's orders for the stuck sagas; nil: the list is not available.
	Orders OrderLister
	// Redrive hands dead letters back; nil: redrive is not available in this process (the page says how).
	Redrive Redriver
	// OperatorToken, when set, is required to redrive (Authorization: Bearer, or the form field "token").
	OperatorToken string
	// StuckAfter is how long a saga may be PENDING before it is listed as stuck (default 30s).
	StuckAfter time.Duration
	// Interval is how often topics, groups and new events are sampled (default 2s).
	Interval time.Duration
	// Window is how far back saga outcomes and latencies reach (default 15m).
	Window time.Duration
	Log    zerolog.Logger
}

func (c Config) withDefaults() Config {
	if c.StuckAfter <= 0 {
		c.StuckAfter = 30 * time.Second
	}
	if c.Interval <= 0 {
		c.Interval = 2 * time.Second
	}
	if c.Window <= 0 {
		c.Window = 15 * time.Minute
	}
	return c
}

// Console serves the pages and their API and samples the cluster while Run runs.
type Console struct {
	cfg     Config
	in      *kafkaadmin.Inspector
	sampler *sampler
	static  fs.FS
	done    chan struct{} // closed when Run returns, so live streams end before the server shuts down
	once    sync.Once
}

// New returns a console of the cluster at cfg.Brokers; Close releases its connections.
func New(cfg Config) (*Console, error) {
	cfg = cfg.withDefaults()
	in, err := kafkaadmin.NewInspector(cfg.Brokers)
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	static, err := fs.Sub(webFiles, "web")
	if err != nil {
		return nil, err
	}
	c := &Console{cfg: cfg, in: in, static: static, done: make(chan struct{})}
	c.sampler = newSampler(cfg, in)
	return c, nil
}

// Close releases the console's Kafka connections.
func (c *Console) Close() { c.in.Close() }

// Run samples the cluster every Interval until ctx ends.
func (c *Console) Run(ctx context.Context) error {
	defer c.once.Do(func() { close(c.done) })
	return c.sampler.run(ctx)
}

// Routes registers / (a redirect to /ui), the pages under /ui and their API under /ui/api.
func (c *Console) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/", http.StatusFound)
	})
	mux.HandleFunc("GET /ui", c.page)
	mux.HandleFunc("GET /ui/{$}", c.page)
	mux.HandleFunc("GET /ui/{page}", c.page)
	mux.HandleFunc("GET /ui/static/{file}", c.file)
	mux.HandleFunc("GET /ui/api/snapshot", c.handleSnapshot)
	mux.HandleFunc("GET /ui/api/stream", c.handleStream)
	mux.HandleFunc("GET /ui/api/messages", c.handleMessages)
	mux.HandleFunc("GET /ui/api/tail", c.handleTail)
	mux.HandleFunc("GET /ui/api/deadletters", c.handleDeadLetters)
	mux.HandleFunc("POST /ui/api/deadletters/{service}/redrive", c.handleRedrive)
	mux.HandleFunc("GET /ui/api/sagas/stuck", c.handleStuck)
	mux.HandleFunc("GET /ui/api/sagas/{id}", c.handleSaga)
}

// pages are the console's pages; every one is the same document, whose script renders the page named by
// the path.
var pages = []string{"flow", "topics", "messages", "deadletters", "sagas"}

// csp allows the console's own script, style and API, and nothing else.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
	"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

func (c *Console) page(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("page")
	if name == "" {
		http.Redirect(w, r, "/ui/flow", http.StatusFound)
		return
	}
	known := false
	for _, p := range pages {
		known = known || p == name
	}
	if !known {
		httpapi.WriteProblem(w, r, httpapi.NewProblem(http.StatusNotFound, "the console has no page "+name))
		return
	}
	b, err := fs.ReadFile(c.static, "index.html")
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	w.Header().Set("Content-Security-Policy", csp)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}

func (c *Console) file(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	if name == "index.html" || strings.Contains(name, "..") {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Security-Policy", csp)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.ServeFileFS(w, r, c.static, name)
}

func (c *Console) handleSnapshot(w http.ResponseWriter, r *http.Request) {
	httpapi.WriteJSON(w, http.StatusOK, c.sampler.snapshot())
}

// handleStream sends the snapshot as an SSE "snapshot" event after every sample.
func (c *Console) handleStream(w http.ResponseWriter, r *http.Request) {
	s, ok := c.openStream(w, r)
	if !ok {
		return
	}
	defer s.close()
	last := time.Time{}
	for {
		snap := c.sampler.snapshot()
		if snap.At.After(last) {
			last = snap.At
			if err := s.send("snapshot", snap); err != nil {
				return
			}
		}
		if !s.wait(c.cfg.Interval / 2) {
			return
		}
	}
}

// authorized reports whether r carries the operator token (or none is needed).
func (c *Console) authorized(r *http.Request) bool {
	if c.cfg.OperatorToken == "" {
		return true
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		token = r.PostFormValue("token")
	}
	return subtle.ConstantTimeCompare([]byte(token), []byte(c.cfg.OperatorToken)) == 1
}

// topic and group add the namespace to a name the saga table uses.
func (c *Console) topic(name string) string { return c.cfg.Namespace + name }
