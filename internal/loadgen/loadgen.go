// Package loadgen offers orders to a running choreo at a fixed rate (open loop) through its ingress and
// measures each saga from the POST to its final event (order.confirmed or order.cancelled), read from
// the order topic. Run offers one load and reports it; FindMax raises the rate step by step to the knee.
package loadgen

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/choreo-dev/choreo/sagas"
)

// Config is one load: where to send it, how much, of what, and where to report.
type Config struct {
	URL           string   // the ingress, e.g. http://127.0.0.1:8080
	Token         string   // Bearer token for the order API, when set
	OperatorToken string   // Bearer token for PUT /v1/products, when set
	Brokers       []string // Kafka, to read final events from; unreachable: the read model is polled instead
	Topic         string   // the order service's topic; default order.events
	Topics        []string // every topic of the saga, for Hops; default sagas.Topics()
	Hops          bool     // after each load, read its events back from Topics and break its time down by step

	Rate     float64       // orders offered per second
	Count    int           // orders to offer; 0: for Duration
	Duration time.Duration // how long to offer when Count is 0
	Mix      Mix           // outcomes asked for; default all confirmed
	Catalog  Catalog       // products ordered
	Seed     uint64        // of the product draw, so a run is reproducible

	Concurrency    int           // POSTs in flight at most; an order due while all are busy is an error
	Drain          time.Duration // after offering, how long to wait for orders in flight
	LateTolerance  time.Duration // a send this much behind its schedule counts as late
	RequestTimeout time.Duration // of one POST
	PollInterval   time.Duration // of the read-model fallback

	Progress Progress
	FindMax  FindMaxConfig
}

// Progress is where the live progress line goes.
type Progress struct {
	W       io.Writer     // nil: no progress
	Rewrite bool          // rewrite one line with \r (a terminal), else a line each Every
	Every   time.Duration // default 1s when rewriting, 5s otherwise
}

// FindMaxConfig is how FindMax raises the rate.
type FindMaxConfig struct {
	Start       float64       // first rate, orders/s
	Factor      float64       // each next rate is this times the last (> 1)
	Step        time.Duration // how long each rate is offered
	MaxP99      time.Duration // a step with a higher p99 fails
	MinFinished float64       // a step in which a smaller share of the offered orders finished fails
	MaxRate     float64       // no step above this rate
	// Warmup is how long Start is offered before the first step, and not judged (0: no warm-up). A
	// system's first seconds under load (database connections opened, caches filled) say nothing about the
	// rate it sustains, and a stall then would fail the first step and hide the knee.
	Warmup time.Duration
}

func (c *Config) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Topic == "" {
		c.Topic = "order.events"
	}
	if c.Topics == nil {
		c.Topics = sagas.Topics()
	}
	if c.Mix == nil {
		c.Mix = Mix{Confirmed: 1}
	}
	if c.Catalog.Prefix == "" {
		c.Catalog.Prefix = "LOAD-"
	}
	if c.Concurrency == 0 {
		c.Concurrency = 1000
	}
	def(&c.Drain, 10*time.Second)
	def(&c.LateTolerance, 10*time.Millisecond)
	def(&c.RequestTimeout, 10*time.Second)
	def(&c.PollInterval, 250*time.Millisecond)
	if c.Progress.Every == 0 {
		c.Progress.Every = map[bool]time.Duration{true: time.Second, false: 5 * time.Second}[c.Progress.Rewrite]
	}
	f := &c.FindMax
	if f.Start == 0 {
		f.Start = 50
	}
	if f.Factor == 0 {
		f.Factor = 1.5
	}
	def(&f.Step, 10*time.Second)
	def(&f.MaxP99, 250*time.Millisecond)
	if f.MinFinished == 0 {
		f.MinFinished = 0.95
	}
	if f.MaxRate == 0 {
		f.MaxRate = 20_000
	}
}

// validate checks a config after defaults; findMax says whether the rate and length come from FindMax.
func (c Config) validate(findMax bool) error {
	var errs []error
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("url %q: want http(s)://host:port", c.URL))
	}
	if !findMax && (c.Rate <= 0 || (c.Count <= 0 && c.Duration <= 0)) {
		errs = append(errs, errors.New("rate and a count or a duration must be positive"))
	}
	if findMax && (c.FindMax.Start <= 0 || c.FindMax.Factor <= 1 || c.FindMax.Step <= 0 || c.FindMax.MinFinished > 1 || c.FindMax.Warmup < 0) {
		errs = append(errs, errors.New("find-max: start rate and step duration must be positive, the factor above 1, the finished share at most 1, the warm-up not negative"))
	}
	if c.Concurrency < 1 {
		errs = append(errs, errors.New("concurrency must be at least 1"))
	}
	if err := c.Mix.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Catalog.validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
