//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/events"
	"github.com/choreo-dev/choreo/internal/devstack/pgembed"
	"github.com/choreo-dev/choreo/internal/kafkaadmin"
	"github.com/choreo-dev/choreo/internal/loadgen"
	"github.com/choreo-dev/choreo/internal/postgres"
	"github.com/choreo-dev/choreo/internal/testing/testenv"
)

// services are the processes of the system besides the ingress; the first four serve the API the ingress
// routes to.
var services = []string{"order", "orderview", "inventory", "customer", "payment", "shipping", "notification"}

const (
	loadRate    = 15 // orders a second
	skuPrefix   = "CHAOS-"
	seededStock = 1_000_000_000 // what loadgen seeds every product with (its NOSTOCK product: 0)
)

// TestChaos runs the system as separate processes on a real broker and Postgres, injects faults during a
// load of orders, and checks that nothing was lost or doubled. Run it with `make chaos`.
func TestChaos(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	r := newRig(ctx, t)
	for _, s := range services {
		r.start(ctx, s, s)
	}
	r.start(ctx, "ingress", "ingress")
	for name := range r.procs {
		r.waitReady(ctx, name)
	}
	t.Logf("system up: %d processes, broker %s, postgres on port %d", len(r.procs), r.brokers, r.pgPort)

	faults := []struct {
		after time.Duration // the previous fault was survived
		what  string
		do    func()
	}{
		{8 * time.Second, "SIGKILL inventory, restart", func() { r.killRestart(ctx, "inventory") }},
		{8 * time.Second, "SIGKILL payment, restart", func() { r.killRestart(ctx, "payment") }},
		{8 * time.Second, "restart the Kafka broker", func() { r.restartBroker(ctx) }},
		{10 * time.Second, "second shipping instance (rebalance)", func() { r.start(ctx, "shipping#2", "shipping"); r.waitReady(ctx, "shipping#2") }},
		{8 * time.Second, "restart Postgres", func() { r.restartPostgres(ctx) }},
		{10 * time.Second, "SIGKILL order, restart", func() { r.killRestart(ctx, "order") }},
		{6 * time.Second, "SIGKILL notification and orderview, restart", func() { r.killRestart(ctx, "notification", "orderview") }},
		{8 * time.Second, "SIGKILL the first shipping instance (rebalance), restart", func() { r.killRestart(ctx, "shipping") }},
	}
	type outcome struct {
		what     string
		took, at time.Duration
	}
	// The load runs until every fault was injected and survived, and a little longer: a fault that takes
	// long (a broker restart on a busy machine) only delays the next one, each of which still lands under load.
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	done := make(chan []outcome, 1)
	start := time.Now()
	go func() {
		var out []outcome
		for _, f := range faults {
			if !sleepUntil(ctx, time.Now().Add(f.after)) {
				break
			}
			t.Logf("fault at %v: %s", time.Since(start).Round(time.Second), f.what)
			began := time.Now()
			f.do()
			out = append(out, outcome{f.what, time.Since(began), time.Since(start)})
		}
		sleepUntil(ctx, time.Now().Add(10*time.Second))
		stopLoad()
		done <- out
	}()
	mix, err := loadgen.ParseMix("confirmed=70,payment_declined=10,out_of_stock=10,shipping_failed=10")
	if err != nil {
		t.Fatal(err)
	}
	report, err := loadgen.Run(loadCtx, loadgen.Config{
		URL: "http://" + r.addr("ingress"), Brokers: []string{r.brokers},
		Rate: loadRate, Duration: 10 * time.Minute, Mix: mix, Drain: 30 * time.Second, Concurrency: 200,
		Catalog: loadgen.Catalog{Prefix: skuPrefix, Products: 10, HotShare: 0.2, Lines: 2},
	})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	injected := <-done

	pools := r.pools(ctx)
	r.waitSettled(ctx, pools)
	res := check(ctx, t, pools, r.brokers)

	var b strings.Builder
	fmt.Fprintf(&b, "\n=== chaos: %d faults injected during %v of load at %d orders/s, all survived ===\n",
		len(injected), report.Offering.Round(time.Second), loadRate)
	for i, f := range injected {
		fmt.Fprintf(&b, "  %d. at %-6v %-58s back in %v\n", i+1, f.at.Round(time.Second), f.what, f.took.Round(100*time.Millisecond))
	}
	fmt.Fprintf(&b, "load: offered %d, accepted %d, seen final by the load %d, with another outcome than asked %d (POST errors during faults: %d %v)\n",
		report.Offered, report.Accepted, report.Finished, report.Wrong, report.Errors(), report.Failures)
	b.WriteString(res.String())
	t.Log(b.String())
	if len(injected) != len(faults) {
		t.Errorf("only %d of %d faults were injected", len(injected), len(faults))
	}
}

func sleepUntil(ctx context.Context, at time.Time) bool {
	select {
	case <-time.After(time.Until(at)):
		return true
	case <-ctx.Done():
		return false
	}
}

// rig is the running system: the broker, the Postgres cluster and the choreo processes.
type rig struct {
	t         *testing.T
	root      string // the repository
	dir       string
	bin       string
	brokers   string
	kafkaDir  string
	pg        *pgembed.Cluster
	pgDir     string
	pgPort    int
	serverURL string
	procs     map[string]*proc
}

// proc is one choreo process, restartable.
type proc struct {
	command string
	port    int
	cmd     *exec.Cmd
	exited  chan struct{}
}

func newRig(ctx context.Context, t *testing.T) *rig {
	t.Helper()
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil { // the Postgres server runs as user postgres
		t.Fatal(err)
	}
	r := &rig{t: t, root: root, dir: dir, bin: filepath.Join(dir, "choreo"), procs: map[string]*proc{}}
	build := exec.CommandContext(ctx, "go", "build", "-o", r.bin, "./cmd/choreo")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build choreo: %v\n%s", err, out)
	}

	r.kafkaDir = filepath.Join(dir, "kafka")
	out, err := r.kafkaScript(ctx, "start", r.kafkaDir)
	if err != nil {
		t.Fatalf("start kafka: %v", err)
	}
	for line := range strings.Lines(out) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "KAFKA_BROKERS="); ok {
			r.brokers = v
		}
	}
	if r.brokers == "" {
		t.Fatalf("kafka.sh start printed no KAFKA_BROKERS: %q", out)
	}
	t.Cleanup(func() {
		if _, err := r.kafkaScript(context.Background(), "stop", r.kafkaDir); err != nil {
			t.Errorf("stop kafka: %v", err)
		}
	})

	r.pgDir = filepath.Join(dir, "pg")
	r.pg, err = pgembed.Start(ctx, pgembed.Config{DataDir: r.pgDir, Durable: true, Log: testenv.Logger(t)})
	if err != nil {
		t.Fatalf("start postgres: %v", err)
	}
	r.pgPort, r.serverURL = r.pg.Port(), r.pg.URL("postgres")
	t.Cleanup(func() { _ = r.pg.Stop(context.Background()) })
	t.Cleanup(r.stopAll) // runs first: the processes before their broker and database

	topics := exec.CommandContext(ctx, r.bin, "topics")
	topics.Env = append(os.Environ(), "KAFKA_BROKERS="+r.brokers, "KAFKA_PARTITIONS=6", "LOG_FORMAT=json")
	if out, err := topics.CombinedOutput(); err != nil {
		t.Fatalf("choreo topics: %v\n%s", err, out)
	}
	return r
}

func (r *rig) kafkaScript(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(r.root, "scripts", "kafka.sh"), args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("kafka.sh %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

func (r *rig) addr(name string) string { return fmt.Sprintf("127.0.0.1:%d", r.procs[name].port) }

// env is the environment of a process running command, as docker-compose.yml sets it.
func (r *rig) env(ctx context.Context, command string, port int) []string {
	env := append(os.Environ(), "KAFKA_BROKERS="+r.brokers, "KAFKA_PARTITIONS=6", "LOG_FORMAT=json", "LOG_LEVEL=info",
		fmt.Sprintf("HTTP_ADDR=127.0.0.1:%d", port))
	switch command {
	case "ingress":
		return append(env, "AUTH_DISABLED=true", "ORDER_URL=http://"+r.addr("order"), "ORDERVIEW_URL=http://"+r.addr("orderview"),
			"INVENTORY_URL=http://"+r.addr("inventory"), "CUSTOMER_URL=http://"+r.addr("customer"))
	case "order":
		env = append(env, "AUTH_DISABLED=true", "SAGA_DEADLINE=60s")
	case "orderview", "inventory", "customer":
		env = append(env, "AUTH_DISABLED=true")
	}
	dbURL, err := postgres.EnsureDatabase(ctx, r.serverURL, command)
	if err != nil {
		r.t.Fatalf("database %s: %v", command, err)
	}
	return append(env, "DATABASE_URL="+dbURL)
}

// start starts (or restarts, on its port) the process called name running `choreo command`.
func (r *rig) start(ctx context.Context, name, command string) {
	p := r.procs[name]
	if p == nil {
		p = &proc{command: command, port: testenv.FreePort(r.t)}
		r.procs[name] = p
	}
	logFile, err := os.OpenFile(filepath.Join(r.dir, name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		r.t.Fatal(err)
	}
	p.cmd = exec.Command(r.bin, command)
	p.cmd.Env = r.env(ctx, command, p.port)
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	if err := p.cmd.Start(); err != nil {
		r.t.Fatalf("start %s: %v", name, err)
	}
	p.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) {
		_ = cmd.Wait()
		logFile.Close()
		close(exited)
	}(p.cmd, p.exited)
}

// waitReady waits until name answers /readyz with 200 (its database and Kafka reachable).
func (r *rig) waitReady(ctx context.Context, name string) {
	url := "http://" + r.addr(name) + "/readyz"
	deadline := time.Now().Add(3 * time.Minute)
	for {
		select {
		case <-r.procs[name].exited:
			r.t.Fatalf("%s exited; see %s", name, filepath.Join(r.dir, name+".log"))
		default:
		}
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			r.t.Fatalf("%s not ready within 3 minutes; see %s", name, filepath.Join(r.dir, name+".log"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// killRestart kills each named process with SIGKILL, then starts it again and waits until it is ready.
func (r *rig) killRestart(ctx context.Context, names ...string) {
	for _, name := range names {
		p := r.procs[name]
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
	}
	for _, name := range names {
		r.start(ctx, name, r.procs[name].command)
	}
	for _, name := range names {
		r.waitReady(ctx, name)
	}
}

func (r *rig) restartBroker(ctx context.Context) {
	if _, err := r.kafkaScript(ctx, "restart", r.kafkaDir); err != nil {
		r.t.Fatalf("restart kafka: %v", err)
	}
}

func (r *rig) restartPostgres(ctx context.Context) {
	if err := r.pg.Stop(ctx); err != nil {
		r.t.Fatalf("stop postgres: %v", err)
	}
	var err error
	if r.pg, err = pgembed.Start(ctx, pgembed.Config{DataDir: r.pgDir, Port: r.pgPort, Durable: true, Log: testenv.Logger(r.t)}); err != nil {
		r.t.Fatalf("restart postgres: %v", err)
	}
}

// stopAll stops every process: SIGTERM, then SIGKILL after 20 seconds.
func (r *rig) stopAll() {
	for _, p := range r.procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for name, p := range r.procs {
		select {
		case <-p.exited:
		case <-time.After(20 * time.Second):
			r.t.Errorf("%s did not stop within 20s of SIGTERM", name)
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	}
}

// pools connects to every service's database.
func (r *rig) pools(ctx context.Context) map[string]*pgxpool.Pool {
	out := map[string]*pgxpool.Pool{}
	for _, s := range services {
		url, err := postgres.EnsureDatabase(ctx, r.serverURL, s)
		if err != nil {
			r.t.Fatal(err)
		}
		pool, err := postgres.Connect(ctx, url)
		if err != nil {
			r.t.Fatal(err)
		}
		r.t.Cleanup(pool.Close)
		out[s] = pool
	}
	return out
}

// waitSettled waits until no order is pending, every outbox is empty and every consumer group has caught
// up: the system has finished reacting.
func (r *rig) waitSettled(ctx context.Context, pools map[string]*pgxpool.Pool) {
	admin := kafkaadmin.Admin{Brokers: []string{r.brokers}}
	settled := func() (bool, string) {
		pending := count(ctx, r.t, pools["order"], `SELECT count(*) FROM orders WHERE status = 'PENDING'`)
		if pending > 0 {
			return false, fmt.Sprintf("%d orders pending", pending)
		}
		for _, s := range services {
			if n := count(ctx, r.t, pools[s], `SELECT count(*) FROM outbox`); n > 0 {
				return false, fmt.Sprintf("%d rows in the outbox of %s", n, s)
			}
		}
		for _, s := range []string{"inventory", "payment", "shipping", "notification", "orderview"} {
			for _, topic := range []string{"order.events", "inventory.events", "payment.events", "shipping.events", "notification.events"} {
				offsets, err := admin.GroupOffsets(ctx, s, topic)
				if err != nil {
					return false, err.Error()
				}
				for _, o := range offsets {
					if o.Committed > 0 && o.Lag() > 0 { // 0: a topic the group does not read
						return false, fmt.Sprintf("%s lags %d on %s/%d", s, o.Lag(), topic, o.Partition)
					}
				}
			}
		}
		return true, ""
	}
	deadline := time.Now().Add(4 * time.Minute)
	for {
		ok, why := settled()
		if ok {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			r.t.Fatalf("the system did not settle within 4 minutes of the load: %s", why)
		}
		time.Sleep(time.Second)
	}
}

func count(ctx context.Context, t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// results is what the checks found.
type results struct {
	byStatus            map[string]int
	checks              []string
	events, republished int
}

func (r results) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "orders: %v\n", r.byStatus)
	fmt.Fprintf(&b, "events on the topics: %d (%d of them relay republishes of an id already there, deduped by the inboxes)\n", r.events, r.republished)
	for _, c := range r.checks {
		fmt.Fprintf(&b, "  ok  %s\n", c)
	}
	return b.String()
}

func rows[T any](ctx context.Context, t *testing.T, pool *pgxpool.Pool, sql string) []T {
	t.Helper()
	rs, err := pool.Query(ctx, sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	out, err := pgx.CollectRows(rs, pgx.RowToStructByPos[T])
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

// check verifies the databases and the topics once the system settled.
func check(ctx context.Context, t *testing.T, pools map[string]*pgxpool.Pool, brokers string) results {
	t.Helper()
	res := results{byStatus: map[string]int{}}
	ok := func(format string, args ...any) { res.checks = append(res.checks, fmt.Sprintf(format, args...)) }

	type order struct{ ID, Status, Reason string }
	orders := rows[order](ctx, t, pools["order"], `SELECT id::text, status, reason FROM orders`)
	status := map[string]string{}
	for _, o := range orders {
		status[o.ID] = o.Status
		res.byStatus[o.Status+map[bool]string{true: "/" + o.Reason}[o.Reason != ""]]++
	}
	if len(orders) == 0 {
		t.Fatal("no orders were placed")
	}
	if n := res.byStatus["PENDING"]; n > 0 {
		t.Errorf("%d sagas not final", n)
	} else {
		ok("every saga final: %d orders CONFIRMED or CANCELLED", len(orders))
	}

	// Stock: nothing reserved at the end, nothing created or lost, and what was sold is exactly what the
	// sold reservations hold (a reservation applied twice would move the stock twice).
	type product struct {
		SKU                   string
		Stock, Reserved, Sold int64
		SoldByReservations    int64
	}
	products := rows[product](ctx, t, pools["inventory"], `SELECT p.sku, p.stock, p.reserved, p.sold,
		coalesce((SELECT sum((l->>'quantity')::bigint) FROM reservations r, jsonb_array_elements(r.lines) l
		          WHERE r.status = 'SOLD' AND l->>'sku' = p.sku), 0)
		FROM products p WHERE p.sku LIKE '`+skuPrefix+`%'`)
	var sold int64
	stockOK := len(products) > 0
	for _, p := range products {
		want := int64(seededStock)
		if strings.HasSuffix(p.SKU, "NOSTOCK") {
			want = 0
		}
		if p.Reserved != 0 || p.Stock+p.Sold != want || p.Sold != p.SoldByReservations {
			t.Errorf("product %s: stock %d, reserved %d, sold %d (sold reservations hold %d), seeded %d", p.SKU, p.Stock, p.Reserved, p.Sold, p.SoldByReservations, want)
			stockOK = false
		}
		sold += p.Sold
	}
	if stockOK {
		ok("stock conserved over %d products: stock + sold = seeded, nothing reserved, sold (%d units) = the sold reservations' lines", len(products), sold)
	}

	// Every step's state agrees with the order's outcome, and money moved exactly for confirmed orders.
	type step struct {
		OrderID, Status string
		Cents           int64
	}
	byOrder := func(service, sql string) map[string]step {
		m := map[string]step{}
		for _, s := range rows[step](ctx, t, pools[service], sql) {
			m[s.OrderID] = s
		}
		return m
	}
	reservations := byOrder("inventory", `SELECT order_id, status, total_cents FROM reservations`)
	payments := byOrder("payment", `SELECT order_id, status, coalesce(amount_cents, 0) FROM payments`)
	shipments := byOrder("shipping", `SELECT order_id, status, 0::bigint FROM shipments`)
	notes := byOrder("notification", `SELECT order_id, outcome, 0::bigint FROM notifications`)
	var authorized, soldCents int64
	bad := 0
	for id, st := range status {
		res, pay, ship, note := reservations[id], payments[id], shipments[id], notes[id]
		var wrong []string
		switch st {
		case "CONFIRMED":
			if res.Status != "SOLD" || pay.Status != "AUTHORIZED" || ship.Status != "SCHEDULED" || pay.Cents != res.Cents {
				wrong = append(wrong, fmt.Sprintf("reservation %s %d, payment %s %d, shipment %s", res.Status, res.Cents, pay.Status, pay.Cents, ship.Status))
			}
			if note.Status != "order.confirmed" {
				wrong = append(wrong, "notification "+note.Status)
			}
			soldCents += res.Cents
		case "CANCELLED":
			if res.Status == "RESERVED" || res.Status == "SOLD" || pay.Status == "AUTHORIZED" || ship.Status == "SCHEDULED" {
				wrong = append(wrong, fmt.Sprintf("reservation %s, payment %s, shipment %s", res.Status, pay.Status, ship.Status))
			}
			if note.Status != "order.cancelled" {
				wrong = append(wrong, "notification "+note.Status)
			}
		}
		if pay.Status == "AUTHORIZED" {
			authorized += pay.Cents
		}
		if len(wrong) > 0 {
			bad++
			if bad <= 10 {
				t.Errorf("order %s %s: %s", id, st, strings.Join(wrong, "; "))
			}
		}
	}
	for id := range notes {
		if _, known := status[id]; !known {
			t.Errorf("notification for unknown order %s", id)
			bad++
		}
	}
	if bad == 0 {
		ok("every confirmed order sold, charged and shipped, every cancelled one released, refunded or never charged")
		ok("each of the %d orders got exactly one notification, with its outcome", len(orders))
	}
	if authorized != soldCents {
		t.Errorf("money: %d cents authorized, %d cents of stock sold", authorized, soldCents)
	} else {
		ok("money conserved: %d cents authorized = the value of the stock sold", authorized)
	}

	// No effect twice: a handler applied twice would emit its reaction twice, under two event ids.
	ids := map[string]map[string]bool{} // subject/type -> event ids
	seen := map[string]bool{}
	admin := kafkaadmin.Admin{Brokers: []string{brokers}}
	for _, topic := range []string{"order.events", "inventory.events", "payment.events", "shipping.events", "notification.events"} {
		ends, err := admin.EndOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		for partition, end := range ends {
			if end == 0 {
				continue
			}
			rd := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{brokers}, Topic: topic, Partition: partition, MaxWait: 250 * time.Millisecond})
			for {
				m, err := rd.FetchMessage(ctx)
				if err != nil {
					t.Fatalf("read %s/%d: %v", topic, partition, err)
				}
				res.events++
				if e, err := events.FromMessage(m); err == nil {
					if seen[e.ID.String()] {
						res.republished++
					}
					seen[e.ID.String()] = true
					k := e.Subject + " " + e.Type
					if ids[k] == nil {
						ids[k] = map[string]bool{}
					}
					ids[k][e.ID.String()] = true
				}
				if m.Offset+1 >= end {
					break
				}
			}
			rd.Close()
		}
	}
	doubled := 0
	for k, set := range ids {
		if len(set) > 1 {
			doubled++
			if doubled <= 10 {
				t.Errorf("%s was emitted %d times under distinct ids: an effect applied twice", k, len(set))
			}
		}
	}
	if doubled == 0 {
		ok("no effect applied twice: each of the %d (order, event type) pairs was emitted under one event id", len(ids))
	}
	return res
}
