package console

import (
	"slices"
	"time"

	"github.com/choreo-dev/choreo/sagas"
)

// Flow is the choreography as a graph: the services and the event types flowing between them.
type Flow struct {
	Nodes []Node `json:"nodes"`
	Edges []Edge `json:"edges"`
}

// Node is a service (or the read model, or the client placing orders) with its consumer group's state.
type Node struct {
	Name    string `json:"name"`
	Group   string `json:"group,omitempty"`
	State   string `json:"state,omitempty"`
	Members int    `json:"members"`
	Lag     int64  `json:"lag"`
}

// Edge is an event type going from the service that emits it to one that reacts to it.
type Edge struct {
	From string     `json:"from"`
	To   string     `json:"to"`
	Type string     `json:"type"`
	Kind sagas.Kind `json:"kind"`
	Rate float64    `json:"rate"` // messages per second of the type
}

// client is the node standing for whoever calls POST /v1/orders.
const client = "client"

// flow builds the graph from the saga table and the sampled groups; s.mu is held.
func (s *sampler) flow(groups []GroupStat, now time.Time) Flow {
	byID := map[string]GroupStat{}
	for _, g := range groups {
		byID[g.ID] = g
	}
	f := Flow{Nodes: []Node{{Name: client}}}
	names := sagas.Services()
	for _, svc := range s.cfg.Services {
		if !slices.Contains(names, svc.Name) {
			names = append(names, svc.Name) // the read model and any other consumer
		}
	}
	for _, name := range names {
		n := Node{Name: name, Group: s.cfg.Namespace + name}
		if g, ok := byID[n.Group]; ok {
			n.State, n.Members, n.Lag = g.State, len(g.Members), g.Lag
		}
		f.Nodes = append(f.Nodes, n)
	}
	for _, r := range sagas.OrderSaga() {
		switch {
		case r.IsRequest():
			f.Edges = append(f.Edges, Edge{From: client, To: r.Service, Type: r.Trigger, Kind: r.Kind, Rate: s.typeRate(r.Emits[0], now)})
		case r.IsEvent():
			f.Edges = append(f.Edges, Edge{From: sagas.Emitter(r.Trigger), To: r.Service, Type: r.Trigger, Kind: r.Kind, Rate: s.typeRate(r.Trigger, now)})
		}
	}
	return f
}
