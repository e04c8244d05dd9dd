package system_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
	"github.com/choreo-dev/choreo/sagas"
)

// restartable is a Kafka broker private to one test that can be restarted with its data.
type restartable interface {
	Brokers() []string
	Restart(t *testing.T)
}

// privateKafka starts a real KRaft broker through scripts/kafka.sh when the suite runs under
// scripts/with-kafka.sh (CHOREO_KAFKA_SH is set), and a persistent in-process broker otherwise.
func privateKafka(t *testing.T) restartable {
	t.Helper()
	script := os.Getenv("CHOREO_KAFKA_SH")
	if script == "" {
		return ownKafka{testenv.OwnKafka(t)}
	}
	return startRealKafka(t, script)
}

// startRealKafka starts a broker private to the test with scripts/kafka.sh (at script), env adding to the
// script's environment, and stops it when the test ends.
func startRealKafka(t *testing.T, script string, env ...string) realKafka {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "kafka")
	var out []byte
	for attempt := 1; ; attempt++ {
		cmd := exec.Command(script, "start", dir)
		cmd.Env = append(os.Environ(), env...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		var err error
		if out, err = cmd.Output(); err == nil {
			break
		}
		// Other test binaries start brokers and servers on this machine at the same time; one retry on
		// fresh ports rides out a collision.
		if attempt == 2 {
			t.Fatalf("start a private real broker: %v\n%s", err, stderr.String())
		}
		t.Logf("start a private real broker (attempt %d): %v\n%s", attempt, err, stderr.String())
		_ = exec.Command(script, "stop", dir).Run()
		dir += "-retry"
	}
	t.Cleanup(func() { _ = exec.Command(script, "stop", dir).Run() })
	line := strings.TrimSpace(string(out))
	t.Logf("private real Kafka broker: %s", line)
	return realKafka{script: script, dir: dir, brokers: strings.Split(strings.TrimPrefix(line, "KAFKA_BROKERS="), ",")}
}

type ownKafka struct {
	b interface {
		Brokers() []string
		Close()
		Restart() error
	}
}

func (k ownKafka) Brokers() []string { return k.b.Brokers() }
func (k ownKafka) Restart(t *testing.T) {
	k.b.Close()
	if err := k.b.Restart(); err != nil {
		t.Errorf("restart in-process broker: %v", err)
	}
}

type realKafka struct {
	script, dir string
	brokers     []string
}

func (k realKafka) Brokers() []string { return k.brokers }
func (k realKafka) Restart(t *testing.T) {
	if out, err := exec.Command(k.script, "restart", k.dir).CombinedOutput(); err != nil {
		t.Errorf("restart real broker: %v\n%s", err, out)
	}
}

// TestBrokerRestartMidSaga restarts Kafka while sagas are in flight and orders keep coming: every order
// must still reach a final state, with one outcome and one notification each, and the stock must add up.
func TestBrokerRestartMidSaga(t *testing.T) {
	t.Parallel()
	broker := privateKafka(t)
	cfg := baseConfig(t)
	cfg.Brokers = broker.Brokers()
	h := start(t, cfg)
	s := sku(t)
	h.putProduct(s, 100, 1000)

	kinds := []struct{ token, country string }{{"tok_visa", "US"}, {"tok_visa", "US"}, {"tok_decline", "US"}, {"tok_visa", "XX"}}
	var mu sync.Mutex
	var ids []string
	placeSome := func(from, n int) {
		for i := from; i < from+n; i++ {
			k := kinds[i%len(kinds)]
			id := h.place(newOrder(h.customer(fmt.Sprintf("r%02d", i)), s, 1+i%3, k.token, k.country))
			mu.Lock()
			ids = append(ids, id)
			mu.Unlock()
		}
	}
	placeSome(0, 20)
	restarted := make(chan struct{})
	go func() { defer close(restarted); broker.Restart(t) }()
	placeSome(20, 20) // while the broker goes down and comes back: the outboxes hold them
	<-restarted
	placeSome(40, 10)

	confirmedUnits := 0
	for _, id := range ids {
		o := h.settled(id, "notification.sent")
		if o.Status == "CONFIRMED" {
			confirmedUnits += o.Items[0].Quantity
		}
		if n := h.notifications(id); n != 1 {
			t.Errorf("order %s: %d notifications, want 1", id, n)
		}
	}
	testenv.Eventually(t, 90*time.Second, "every reservation settled", func() bool { return h.stock(s).Reserved == 0 })
	if st := h.stock(s); st.Sold != confirmedUnits || st.Stock+st.Sold != 1000 {
		t.Errorf("stock %+v: want sold = %d confirmed units and stock + sold = 1000", st, confirmedUnits)
	}
	outcomes := map[string]map[string]bool{} // order -> distinct outcome event ids
	for _, m := range h.topicMessages(sagas.Topic(sagas.Order)) {
		e, err := events.FromMessage(m)
		if err != nil {
			t.Fatal(err)
		}
		if e.Type == "order.confirmed" || e.Type == "order.cancelled" {
			if outcomes[e.Subject] == nil {
				outcomes[e.Subject] = map[string]bool{}
			}
			outcomes[e.Subject][e.ID.String()] = true
		}
	}
	for _, id := range ids {
		if n := len(outcomes[id]); n != 1 {
			t.Errorf("order %s has %d distinct outcome events, want 1", id, n)
		}
	}
}
