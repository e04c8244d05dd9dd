package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/choreo-dev/choreo/cmd/choreo/system"
	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/host"
	"github.com/choreo-dev/choreo/internal/postgres"
	"github.com/choreo-dev/choreo/internal/projection"
)

func replayCommand() command {
	var verify bool
	return command{name: "replay", args: "NAME",
		doc: "rebuild a read model (orderview, salesview) from the topics beside the live one and swap it in, online; -verify compares instead",
		flags: func(fs *flag.FlagSet, _ func(string) string) {
			fs.BoolVar(&verify, "verify", false, "rebuild into a shadow copy and compare it with the live one instead of swapping; exit 1 on any difference")
		},
		run: func(ctx context.Context, cfg Config, args []string, stdout io.Writer) error {
			return replay(ctx, cfg, args, verify, stdout)
		}}
}

// findProjection returns the projection called name and the unit that hosts it. A unit that reacts to
// events (payment sends money, notification sends mail) is refused: replaying it would do it all again.
func findProjection(specs []host.Spec, name string) (host.Spec, projection.Projection, error) {
	var readModels []string
	for _, s := range specs {
		for _, p := range s.Projections {
			if s.Replayable() && p.Name() == name {
				return s, p, nil
			}
			readModels = append(readModels, p.Name())
		}
	}
	for _, s := range specs {
		if s.Name == name {
			return host.Spec{}, nil, fmt.Errorf("refusing to replay %s: it is a service with side effects, not a read model; its handlers "+
				"would act on every past event again (charge, ship, mail). Only read models can be replayed: %s", name, strings.Join(readModels, ", "))
		}
	}
	return host.Spec{}, nil, fmt.Errorf("no read model %q; read models: %s", name, strings.Join(readModels, ", "))
}

// replay rebuilds one projection online (`choreo replay NAME [-verify]`).
func replay(ctx context.Context, cfg Config, args []string, verify bool, stdout io.Writer) error {
	if len(args) != 1 {
		return errors.New("usage: choreo replay [-verify] NAME")
	}
	spec, proj, err := findProjection(system.Specs(systemConfig(cfg)), args[0])
	if err != nil {
		return err
	}
	log := newLogger(cfg)
	cfg, dbURL, stop, err := serviceDatabase(ctx, cfg, spec.Name, log)
	defer stop()
	if err != nil {
		return err
	}
	pool, err := postgres.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := projection.Migrate(ctx, pool); err != nil {
		return err
	}
	reg, err := events.Catalog()
	if err != nil {
		return err
	}
	runner := projection.New(projection.Config{Brokers: cfg.KafkaBrokers, Conn: cfg.KafkaConn, Log: log}, pool, reg, proj)
	bar := newProgressBar(stdout)
	res, err := runner.Rebuild(ctx, projection.RebuildOptions{Verify: verify, Progress: bar.update})
	bar.done()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %s events applied in %s (%s events/s)\n", proj.Name(), thousands(res.Applied), res.Elapsed.Round(time.Millisecond), thousands(int64(res.Rate())))
	if !verify {
		fmt.Fprintf(stdout, "%s: the new copy is live (swapped in one transaction); the running read model continues from its positions\n", proj.Name())
		return nil
	}
	for _, d := range res.Differences {
		fmt.Fprintf(stdout, "differs %s %s\n  live:    %s\n  rebuilt: %s\n", d.Table, d.Key, orNone(d.Live), orNone(d.Rebuilt))
	}
	if res.Different > 0 {
		return fmt.Errorf("%s: %d rows differ between the live copy and one rebuilt from the topics (first %d shown)", proj.Name(), res.Different, len(res.Differences))
	}
	fmt.Fprintf(stdout, "%s: no difference between the live copy and one rebuilt from the topics\n", proj.Name())
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// progressBar draws a replay's progress: redrawn in place on a terminal, a line every few seconds otherwise.
type progressBar struct {
	w     io.Writer
	tty   bool
	last  time.Time
	drawn bool
}

func newProgressBar(w io.Writer) *progressBar {
	f, ok := w.(*os.File)
	return &progressBar{w: w, tty: ok && isTerminal(f)}
}

func (b *progressBar) update(p projection.Progress) {
	every := 5 * time.Second
	if b.tty {
		every = 100 * time.Millisecond
	}
	if time.Since(b.last) < every && p.Phase == "catching up" {
		return
	}
	b.last = time.Now()
	if b.tty {
		fmt.Fprintf(b.w, "\r\033[K%s", renderProgress(p))
		b.drawn = true
		return
	}
	fmt.Fprintln(b.w, renderProgress(p))
}

func (b *progressBar) done() {
	if b.drawn {
		fmt.Fprintln(b.w)
	}
}

// renderProgress is one line: the projection, a bar, events applied of the total, the rate and the ETA.
func renderProgress(p projection.Progress) string {
	const width = 30
	frac := 1.0
	if p.Total > 0 {
		frac = min(1, float64(p.Applied)/float64(p.Total))
	}
	full := int(frac * width)
	return fmt.Sprintf("%s [%s%s] %3.0f%% %s/%s events  %s events/s  ETA %s  %s", p.Projection,
		strings.Repeat("#", full), strings.Repeat("-", width-full), frac*100,
		thousands(p.Applied), thousands(p.Total), thousands(int64(p.Rate())), p.ETA().Round(time.Second), p.Phase)
}

// thousands writes n with thousands separators.
func thousands(n int64) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + thousands(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
