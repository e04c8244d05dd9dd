package console

import (
	"context"
	"net/http"
	"slices"

	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/internal/httpapi"
)

// dlqScan bounds how many of a dead-letter partition's newest messages are shown.
const dlqScan = 500

// DeadLetters are the dead letters of every service.
type DeadLetters struct {
	Services []ServiceLetters `json:"services"`
	// Redrive says whether this process can redrive; TokenRequired whether it needs the operator token.
	Redrive       bool   `json:"redrive"`
	TokenRequired bool   `json:"token_required"`
	Note          string `json:"note,omitempty"`
}

// ServiceLetters are one service's dead letters, newest first.
type ServiceLetters struct {
	Service string       `json:"service"`
	Group   string       `json:"group"`
	Topics  []string     `json:"topics"` // the dead-letter topics it can have letters in
	Letters []DeadLetter `json:"letters"`
}

// DeadLetter is one dead letter: the message and why and where it failed.
type DeadLetter struct {
	Message
	Error    string `json:"error"`
	Origin   string `json:"origin"` // topic/partition@offset
	Consumer string `json:"consumer"`
	At       string `json:"at"`
}

func (c *Console) handleDeadLetters(w http.ResponseWriter, r *http.Request) {
	d, err := c.deadLetters(r.Context())
	if err != nil {
		c.cfg.Log.Error().Err(err).Msg("console: read dead letters")
		httpapi.WriteProblem(w, r, httpapi.NewProblem(http.StatusBadGateway, err.Error()))
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, d)
}

func (c *Console) deadLetters(ctx context.Context) (DeadLetters, error) {
	out := DeadLetters{Redrive: c.cfg.Redrive != nil, TokenRequired: c.cfg.OperatorToken != ""}
	if c.cfg.Redrive == nil {
		out.Note = "redrive runs where the service's database is: `choreo dlq SERVICE redrive`"
	}
	read := map[string][]kafka.Message{} // dead-letter topic -> its newest messages
	for _, svc := range c.cfg.Services {
		sl := ServiceLetters{Service: svc.Name, Group: c.cfg.Namespace + svc.Name, Letters: []DeadLetter{}, Topics: []string{}}
		for _, t := range svc.Consumes {
			dlq := c.topic(t) + consumer.DLQSuffix
			sl.Topics = append(sl.Topics, dlq)
			msgs, ok := read[dlq]
			if !ok {
				var err error
				if msgs, err = c.newest(ctx, dlq, dlqScan); err != nil {
					return out, err
				}
				read[dlq] = msgs
			}
			for _, m := range msgs {
				if header(m.Headers, consumer.HeaderDLQConsumer) == sl.Group {
					sl.Letters = append(sl.Letters, DeadLetter{
						Message: decode(m), Error: header(m.Headers, consumer.HeaderDLQError), Consumer: sl.Group,
						Origin: header(m.Headers, consumer.HeaderDLQTopic) + "/" + header(m.Headers, consumer.HeaderDLQPartition) +
							"@" + header(m.Headers, consumer.HeaderDLQOffset),
						At: header(m.Headers, consumer.HeaderDLQTime),
					})
				}
			}
		}
		slices.SortFunc(sl.Letters, func(a, b DeadLetter) int { return b.Time.Compare(a.Time) })
		out.Services = append(out.Services, sl)
	}
	return out, nil
}

// newest reads up to n of the newest messages of every partition of topic; a topic that does not exist
// has none.
func (c *Console) newest(ctx context.Context, topic string, n int) ([]kafka.Message, error) {
	ts, err := c.in.Topics(ctx, func(name string) bool { return name == topic })
	if err != nil || len(ts) == 0 {
		return nil, err
	}
	var out []kafka.Message
	for _, p := range ts[0].Partitions {
		msgs, _, err := c.in.Read(ctx, topic, p.ID, max(p.Start, p.End-int64(n)), n, 0)
		if err != nil {
			return nil, err
		}
		out = append(out, msgs...)
	}
	return out, nil
}

// handleRedrive hands a service's dead letters back to it, with the operator token when one is set.
func (c *Console) handleRedrive(w http.ResponseWriter, r *http.Request) {
	service := r.PathValue("service")
	known := false
	for _, s := range c.cfg.Services {
		known = known || s.Name == service
	}
	switch {
	case !known:
		httpapi.WriteProblem(w, r, httpapi.NewProblem(http.StatusNotFound, "no service "+service))
		return
	case r.Header.Get("Sec-Fetch-Site") == "cross-site":
		httpapi.WriteProblem(w, r, httpapi.NewProblem(http.StatusForbidden, "redrive only from the console itself"))
		return
	case !c.authorized(r):
		w.Header().Set("WWW-Authenticate", `Bearer realm="choreo console"`)
		httpapi.WriteProblem(w, r, httpapi.NewProblem(http.StatusUnauthorized, "redrive needs the operator token (OPERATOR_TOKEN)"))
		return
	case c.cfg.Redrive == nil:
		httpapi.WriteProblem(w, r, httpapi.NewProblem(http.StatusNotImplemented, "this process has no access to the services' databases; run `choreo dlq "+service+" redrive`"))
		return
	}
	n, err := c.cfg.Redrive(r.Context(), service)
	if err != nil {
		c.cfg.Log.Error().Err(err).Str("service", service).Msg("console: redrive dead letters")
		httpapi.WriteProblem(w, r, httpapi.NewProblem(http.StatusBadGateway, err.Error()))
		return
	}
	c.cfg.Log.Info().Str("service", service).Int("redriven", n).Msg("console: dead letters redriven")
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"service": service, "redriven": n})
}
