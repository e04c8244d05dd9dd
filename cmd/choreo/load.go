package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/choreo-dev/choreo/internal/loadgen"
)

// loadCommand is `choreo load`: an open-loop load against a running choreo (internal/loadgen). Its own
// flags are bound by flags before the command line is parsed; run reads them.
func loadCommand() command {
	var (
		lc       loadgen.Config
		mix      string
		chart    string
		findMax  bool
		hotShare float64
	)
	return command{
		name: "load", doc: "offer orders at a fixed rate to a running choreo; report latency to the final event (-find-max: the knee)",
		flags: func(fs *flag.FlagSet, getenv func(string) string) {
			url := getenv("CHOREO_URL")
			if url == "" {
				url = "http://127.0.0.1:8080"
			}
			lc.Token = getenv("CHOREO_TOKEN")
			fs.StringVar(&lc.URL, "url", url, "the ingress to load (env CHOREO_URL); Authorization: Bearer $CHOREO_TOKEN when set")
			fs.Float64Var(&lc.Rate, "rate", 200, "orders offered per second")
			fs.IntVar(&lc.Count, "count", 0, "orders to offer (0: for -duration)")
			fs.DurationVar(&lc.Duration, "duration", 30*time.Second, "how long to offer when -count is 0")
			fs.StringVar(&mix, "mix", "confirmed=100", "outcome mix: confirmed, payment_declined, out_of_stock, shipping_failed with their shares")
			fs.IntVar(&lc.Catalog.Products, "products", 20, "ordinary products to seed and order from")
			fs.Float64Var(&hotShare, "hot-share", 0.2, "share of orders (0..1) that include the one hot product; 0: no hot product")
			fs.IntVar(&lc.Catalog.Lines, "lines", 2, "lines per order")
			fs.StringVar(&lc.Catalog.Prefix, "sku-prefix", "LOAD-", "sku prefix of the seeded products")
			fs.IntVar(&lc.Concurrency, "concurrency", 1000, "POSTs in flight at most; an order due beyond it is counted as an error, not sent")
			fs.DurationVar(&lc.Drain, "drain", 10*time.Second, "after offering, how long to wait for orders in flight")
			fs.StringVar(&chart, "chart", "load-chart.html", "where to write the latency and throughput chart (HTML with inline SVG); empty: none")
			fs.BoolVar(&lc.Hops, "hops", true, "after the load, read its events back from the saga's topics and report where the time went, step by step (needs Kafka)")
			fs.BoolVar(&findMax, "find-max", false, "raise the rate step by step until p99 or the finished share fails, and report the knee")
			fs.Float64Var(&lc.FindMax.Start, "start-rate", 50, "find-max: the first rate")
			fs.Float64Var(&lc.FindMax.Factor, "step-factor", 1.5, "find-max: each next rate is this times the last")
			fs.DurationVar(&lc.FindMax.Step, "step-duration", 10*time.Second, "find-max: how long each rate is offered")
			fs.DurationVar(&lc.FindMax.MaxP99, "max-p99", 250*time.Millisecond, "find-max: a step with a higher p99 fails")
			fs.Float64Var(&lc.FindMax.MinFinished, "min-finished", 0.95, "find-max: a step in which a smaller share of orders finished (within step + drain) fails")
			fs.DurationVar(&lc.FindMax.Warmup, "warmup", 5*time.Second, "find-max: how long the start rate is offered first, not judged (cold connections and caches); 0: none")
		},
		run: func(ctx context.Context, cfg Config, args []string, stdout io.Writer) error {
			if len(args) > 0 {
				return fmt.Errorf("load takes no arguments, got %q", args)
			}
			m, err := loadgen.ParseMix(mix)
			if err != nil {
				return err
			}
			lc.Mix, lc.Catalog.HotShare = m, hotShare
			lc.OperatorToken = cfg.OperatorToken
			lc.Brokers = cfg.KafkaBrokers
			if len(lc.Brokers) == 0 {
				lc.Brokers = []string{"127.0.0.1:9092"} // the broker `make run` embeds
			}
			lc.Progress = loadgen.Progress{W: os.Stderr, Rewrite: isTerminal(os.Stderr)}
			return runLoad(ctx, lc, findMax, chart, stdout)
		},
	}
}

// runLoad runs the load or the find-max, prints the report and writes the chart.
func runLoad(ctx context.Context, lc loadgen.Config, findMax bool, chart string, stdout io.Writer) error {
	var (
		title   string
		secs    []loadgen.Second
		marks   []loadgen.Mark
		summary = &bytes.Buffer{}
	)
	if findMax {
		m, err := loadgen.FindMax(ctx, lc)
		if err != nil {
			return err
		}
		m.Print(io.MultiWriter(stdout, summary))
		title, secs, marks = "choreo load --find-max", m.Series, m.Marks
	} else {
		fmt.Fprintf(os.Stderr, "offering %.0f orders/s to %s (mix %s)\n", lc.Rate, lc.URL, lc.Mix)
		r, err := loadgen.Run(ctx, lc)
		if err != nil {
			return err
		}
		r.Print(io.MultiWriter(stdout, summary))
		title, secs = fmt.Sprintf("choreo load at %.0f orders/s", lc.Rate), r.Series
	}
	if chart == "" {
		return nil
	}
	f, err := os.Create(chart)
	if err != nil {
		return fmt.Errorf("write chart: %w", err)
	}
	if err := loadgen.WriteChart(f, title, summary.String(), secs, marks); err != nil {
		f.Close()
		return fmt.Errorf("write chart %s: %w", chart, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write chart %s: %w", chart, err)
	}
	fmt.Fprintf(stdout, "chart: %s\n", chart)
	return nil
}
