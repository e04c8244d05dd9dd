package loadgen

import (
	"context"
	"fmt"
	"io"
	"math"
	"text/tabwriter"
	"time"
)

// Step is one rate of a FindMax.
type Step struct {
	Report
	Passed bool
	Why    string // why it failed
}

// MaxReport is the outcome of FindMax: every step, and the knee, the highest rate that passed.
type MaxReport struct {
	Config FindMaxConfig
	Steps  []Step
	Knee   int       // index into Steps; -1 when no step passed
	Series []Second  // every step, one after the other
	Marks  []Mark    // where each step starts in Series
	Start  time.Time // of the first step
	Warmup *Report   // the warm-up before the first step; nil: none
}

// judge decides whether a step passed.
func (f FindMaxConfig) judge(r Report) (bool, string) {
	switch {
	case r.Interrupted:
		return false, "interrupted"
	case r.Latency.P99 > f.MaxP99:
		return false, fmt.Sprintf("p99 %s > %s", ms(r.Latency.P99), ms(f.MaxP99))
	case r.FinishedShare() < f.MinFinished:
		return false, fmt.Sprintf("finished %.1f%% < %.0f%%", 100*r.FinishedShare(), 100*f.MinFinished)
	}
	return true, ""
}

// FindMax raises the offered rate from FindMax.Start by FindMax.Factor per step, each offered for
// FindMax.Step and drained for Drain, until a step's p99 passes FindMax.MaxP99 or fewer than
// FindMax.MinFinished of its orders finish, and reports every step and the knee.
func FindMax(ctx context.Context, cfg Config) (MaxReport, error) {
	cfg.defaults()
	if err := cfg.validate(true); err != nil {
		return MaxReport{}, err
	}
	s, err := open(ctx, cfg)
	if err != nil {
		return MaxReport{}, err
	}
	defer s.close()
	f := cfg.FindMax
	m := MaxReport{Config: f, Knee: -1}
	if f.Warmup > 0 {
		r := s.phase(ctx, fmt.Sprintf("warm-up %5.0f/s ", f.Start), f.Start, 0, f.Warmup, false)
		m.Warmup = &r
	}
	for rate := f.Start; rate <= f.MaxRate && ctx.Err() == nil; rate = math.Round(rate * f.Factor) {
		// Every step is read back: which one is the knee shows only after the next.
		r := s.phase(ctx, fmt.Sprintf("step %d %5.0f/s ", len(m.Steps)+1, rate), rate, 0, f.Step, true)
		if len(m.Steps) == 0 {
			m.Start = r.Start
		}
		passed, why := f.judge(r)
		m.Steps = append(m.Steps, Step{Report: r, Passed: passed, Why: why})
		// Steps follow one another: each one's seconds go after the last one's, where it started.
		at := max(len(m.Series), int(math.Round(r.Start.Sub(m.Start).Seconds())))
		m.Marks = append(m.Marks, Mark{At: at, Label: fmt.Sprintf("%.0f/s", rate)})
		for len(m.Series) < at {
			m.Series = append(m.Series, Second{})
		}
		m.Series = append(m.Series, r.Series...)
		if !passed {
			break
		}
		m.Knee = len(m.Steps) - 1
	}
	return m, nil
}

// Print writes the steps as a table, the knee, and where the time went at the knee and in the step that
// failed (when measured: Config.Hops).
func (m MaxReport) Print(w io.Writer) {
	m.printSteps(w)
	for i, s := range m.Steps {
		if s.Hops != nil && (i == m.Knee || !s.Passed) {
			fmt.Fprintf(w, "\nstep %d, %.0f/s (%s): ", i+1, s.Rate, map[bool]string{true: "the knee", false: "failed"}[s.Passed])
			s.Hops.Print(w)
		}
	}
}

func (m MaxReport) printSteps(w io.Writer) {
	if len(m.Steps) > 0 {
		fmt.Fprintf(w, "final events: %s\n", m.Steps[0].Source)
	}
	if r := m.Warmup; r != nil {
		fmt.Fprintf(w, "warm-up: %.0f/s for %s, not judged: %d offered, %.1f%% finished, p50 %s, p99 %s\n",
			r.Rate, m.Config.Warmup, r.Offered, 100*r.FinishedShare(), ms(r.Latency.P50), ms(r.Latency.P99))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "step\tasked/s\tachieved/s\toffered\tfinished\tfinished/s\terrors\tlate\tp50\tp90\tp99\tmax\thost cpu\t  verdict")
	for i, s := range m.Steps {
		verdict := "pass"
		if !s.Passed {
			verdict = "FAIL: " + s.Why
		}
		fmt.Fprintf(tw, "%d\t%.0f\t%.1f\t%d\t%.1f%%\t%.1f\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t  %s\n", i+1, s.Rate, s.AchievedRate(), s.Offered,
			100*s.FinishedShare(), s.FinishedRate, s.Errors(), s.Late, ms(s.Latency.P50), ms(s.Latency.P90), ms(s.Latency.P99), ms(s.Latency.Max), cpuPercent(s.HostCPU), verdict)
	}
	tw.Flush()
	if len(m.Steps) == 0 {
		fmt.Fprintln(w, "knee: none; stopped before the first step")
		return
	}
	if m.Knee < 0 {
		fmt.Fprintf(w, "knee: none; already the first rate (%.0f/s) failed\n", m.Config.Start)
		return
	}
	k := m.Steps[m.Knee]
	fmt.Fprintf(w, "knee: %.0f orders/s (achieved %.1f/s, finished %.1f/s): p50 %s, p99 %s (limits: p99 <= %s, >= %.0f%% finished within %s + drain)\n",
		k.Rate, k.AchievedRate(), k.FinishedRate, ms(k.Latency.P50), ms(k.Latency.P99), ms(m.Config.MaxP99), 100*m.Config.MinFinished, m.Config.Step)
	if m.Knee == len(m.Steps)-1 {
		fmt.Fprintln(w, "(the last step passed too: the run was interrupted or reached the rate limit before the knee)")
	}
}
