package system_test

import (
	"slices"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/cmd/choreo/system"
	"github.com/choreo-dev/choreo/consumer"
	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/host"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
	"github.com/choreo-dev/choreo/sagas"
	"github.com/choreo-dev/choreo/services/order"
	"github.com/choreo-dev/choreo/services/shipping"
)

// validConfig is the least configuration every service builds with.
var validConfig = system.Config{Order: order.Config{Deadline: time.Minute}, Shipping: shipping.Config{Countries: []string{"US"}}}

// registered builds spec's service without a database (registering handlers touches none) and returns
// the event types it routes.
func registered(t *testing.T, spec host.Spec) []string { return router(t, spec).Reactions() }

// router returns the router spec's service registers its handlers with.
func router(t *testing.T, spec host.Spec) *consumer.Router {
	t.Helper()
	reg, err := events.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	svc, err := spec.Build(host.Deps{Log: testenv.Logger(t), Topic: sagas.Topic(spec.Name)})
	if err != nil {
		t.Fatalf("build %s: %v", spec.Name, err)
	}
	r := consumer.NewRouter(reg)
	svc.Handlers(r)
	return r
}

// reactionDiff returns the table's reactions without a handler and the handlers without a reaction.
func reactionDiff(handled, table []string) (unhandled, unlisted []string) {
	for _, e := range table {
		if !slices.Contains(handled, e) {
			unhandled = append(unhandled, e)
		}
	}
	for _, e := range handled {
		if !slices.Contains(table, e) {
			unlisted = append(unlisted, e)
		}
	}
	return unhandled, unlisted
}

// TestHandlersMatchTheSaga: every service registers exactly the reactions sagas.OrderSaga gives it, so a
// reaction in the table without a handler, or a handler the table does not know, fails here.
func TestHandlersMatchTheSaga(t *testing.T) {
	hosted := map[string]bool{}
	for _, spec := range system.Specs(validConfig) {
		hosted[spec.Name] = true
		if !slices.Contains(sagas.Services(), spec.Name) {
			continue // a read model: it records every event and takes no part in the saga
		}
		t.Run(spec.Name, func(t *testing.T) {
			unhandled, unlisted := reactionDiff(registered(t, spec), sagas.ReactionsOf(spec.Name))
			for _, e := range unhandled {
				t.Errorf("the saga has %s react to %s, but it registers no handler for it", spec.Name, e)
			}
			for _, e := range unlisted {
				t.Errorf("%s handles %s, which the saga (sagas.OrderSaga) does not list as its reaction", spec.Name, e)
			}
			if got, want := router(t, spec).UnhurriedTypes(), sagas.Unhurried(spec.Name); !slices.Equal(got, want) {
				t.Errorf("%s marks %v unhurried; off the saga's critical path (sagas.Unhurried) are %v", spec.Name, got, want)
			}
			if got, want := router(t, spec).Joins(), sagas.Joins(spec.Name); !slices.Equal(got, want) {
				t.Errorf("%s joins %v; the saga's joins (sagas.OrderJoins) are %v", spec.Name, got, want)
			}
			if !slices.Equal(spec.Consumes, sagas.Subscriptions(spec.Name)) {
				t.Errorf("%s consumes %v, the saga says %v", spec.Name, spec.Consumes, sagas.Subscriptions(spec.Name))
			}
		})
	}
	for _, s := range sagas.Services() {
		if !hosted[s] {
			t.Errorf("the saga names %s, but system.Specs hosts no such service", s)
		}
	}
}

// TestReactionDiffFindsBothSides: the comparison above reports a reaction removed from either side.
func TestReactionDiffFindsBothSides(t *testing.T) {
	var inventory host.Spec
	for _, s := range system.Specs(validConfig) {
		if s.Name == sagas.Inventory {
			inventory = s
		}
	}
	handled, table := registered(t, inventory), sagas.ReactionsOf(sagas.Inventory)
	if u, x := reactionDiff(handled, table); len(u)+len(x) != 0 {
		t.Fatalf("inventory differs from the table before anything was removed: %v %v", u, x)
	}
	withoutHandler := slices.DeleteFunc(slices.Clone(handled), func(e string) bool { return e == "order.confirmed" })
	if u, _ := reactionDiff(withoutHandler, table); !slices.Equal(u, []string{"order.confirmed"}) {
		t.Errorf("a handler removed: reported unhandled %v, want [order.confirmed]", u)
	}
	withoutReaction := slices.DeleteFunc(slices.Clone(table), func(e string) bool { return e == "order.confirmed" })
	if _, x := reactionDiff(handled, withoutReaction); !slices.Equal(x, []string{"order.confirmed"}) {
		t.Errorf("a reaction removed from the table: reported unlisted %v, want [order.confirmed]", x)
	}
}
