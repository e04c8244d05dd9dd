package sagas

import (
	"fmt"
	"slices"
	"strings"
)

// Markdown renders the saga as the page docs/saga.md: a sequence-style diagram (Mermaid) and the table of
// reactions. `go run ./cmd/choreo saga > docs/saga.md` regenerates it; a test keeps the file current.
func Markdown() string {
	var b strings.Builder
	b.WriteString("# The order saga\n\n")
	b.WriteString("Generated from `sagas.OrderSaga()` by `go run ./cmd/choreo saga`; do not edit by hand.\n\n")
	b.WriteString("Each service reacts to events on the others' topics; no service calls another. Solid arrows move\n")
	b.WriteString("the saga forward, dotted arrows are compensations.\n\n")
	b.WriteString("```mermaid\nflowchart LR\n")
	for _, r := range OrderSaga() {
		arrow := "-->"
		if r.Kind == Compensation {
			arrow = "-.->"
		}
		targets := r.Emits
		if len(targets) == 0 {
			targets = []string{r.Service + " keeps it"}
		}
		for _, e := range targets {
			fmt.Fprintf(&b, "  %s[\"%s\"] %s|%s| %s[\"%s\"]\n", nodeID(r.Trigger), r.Trigger, arrow, r.Service, nodeID(e), e)
		}
	}
	b.WriteString("```\n\n")
	b.WriteString("| service | reacts to | does | may emit | kind | may wait |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, r := range OrderSaga() {
		emits := "—"
		if len(r.Emits) > 0 {
			emits = "`" + strings.Join(r.Emits, "`, `") + "`"
		}
		trigger := r.Trigger
		if r.IsEvent() {
			trigger = "`" + trigger + "`"
		}
		wait := "no"
		switch {
		case slices.Contains(Unhurried(r.Service), r.Trigger):
			wait = "yes"
		case r.IsEvent() && joined(r.Service, r.Trigger):
			wait = "unless it comes last of its join"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", r.Service, trigger, r.Action, emits, r.Kind, wait)
	}
	b.WriteString("\n*May wait*: the reaction is off the saga's critical path (a record of an order's event that a later step reads, " +
		"or a step after the order's outcome), so it may wait, up to `CONSUMER_LINGER`, for the service's next event " +
		"to share its transaction (`sagas.Unhurried`, `consumer.Router.Unhurried`). Compensations never wait. " +
		"*Unless it comes last of its join*: a step that needs several events of an order (`sagas.OrderJoins`, " +
		"`consumer.Router.Join`); those that arrive before the last only record, so they may wait for it, and the last never waits. The joins:\n\n")
	for _, j := range OrderJoins() {
		fmt.Fprintf(&b, "- %s: `%s`\n", j.Service, strings.Join(j.Types, "` + `"))
	}
	b.WriteString("\n## Topics each service consumes\n\n| service | publishes to | consumes |\n| --- | --- | --- |\n")
	for _, s := range Services() {
		fmt.Fprintf(&b, "| %s | `%s` | `%s` |\n", s, Topic(s), strings.Join(Subscriptions(s), "`, `"))
	}
	return b.String()
}

// nodeID turns a trigger or event name into a Mermaid node id.
func nodeID(name string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, name)
}
