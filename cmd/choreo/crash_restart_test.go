package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/choreo-dev/choreo/internal/testing/testenv"
)

// `choreo run` killed with SIGKILL and started again at once, on the same data: the second start must
// take over what the first left behind (its embedded Postgres still shutting down, its broker's data)
// with no manual step, and the order placed before the kill must still reach its final state.
func TestRunStartsAgainRightAfterKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: not building and running the binary")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()

	bin := filepath.Join(t.TempDir(), "choreo")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dataDir := reachableTempDir(t)
	httpAddr := testenv.FreeAddr(t)
	env := runEnv(dataDir, httpAddr, testenv.FreeAddr(t))

	first := startRun(ctx, t, bin, env, filepath.Join(dataDir, "first.log"))
	waitReady(ctx, t, httpAddr, first)
	id := placeOrder(ctx, t, httpAddr)
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 the first run: %v", err)
	}
	<-first.exited

	second := startRun(ctx, t, bin, env, filepath.Join(dataDir, "second.log"))
	waitReady(ctx, t, httpAddr, second)
	if status := waitFinal(ctx, t, httpAddr, id, second); status != "CONFIRMED" {
		t.Errorf("order %s placed before the kill ended %s, want CONFIRMED", id, status)
	}

	if err := second.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("stop the second run: %v", err)
	}
	select {
	case <-second.exited:
		if second.err != nil {
			t.Errorf("second run after SIGTERM: %v\n%s", second.err, second.logTail())
		}
	case <-ctx.Done():
		t.Fatalf("second run did not stop after SIGTERM\n%s", second.logTail())
	}
}

// runEnv is the environment of `choreo run` for the test: embedded Kafka and Postgres under dataDir
// (whatever the suite itself runs on), fixed ports picked free.
func runEnv(dataDir, httpAddr, kafkaAddr string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if name != "KAFKA_BROKERS" && name != "DATABASE_URL" && !strings.HasPrefix(name, "PG") {
			env = append(env, kv)
		}
	}
	return append(env, "DATA_DIR="+dataDir, "HTTP_ADDR="+httpAddr, "KAFKA_EMBEDDED_ADDR="+kafkaAddr,
		"LOG_FORMAT=json", "LOG_LEVEL=info")
}

type runProcess struct {
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{} // closed when the process has exited; then err is Wait's result
	err     error
}

func startRun(ctx context.Context, t *testing.T, bin string, env []string, logPath string) *runProcess {
	t.Helper()
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run")
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start choreo run: %v", err)
	}
	logFile.Close()
	p := &runProcess{cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		// A test that failed midway leaves the process running: end it, then wait for its embedded
		// Postgres to be stopped (by the process, or by its watchdog) before the data is removed.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
		}
	})
	return p
}

func (p *runProcess) logTail() string {
	b, _ := os.ReadFile(p.logPath)
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	return fmt.Sprintf("--- %s (tail) ---\n%s", filepath.Base(p.logPath), b)
}

// poll calls check every 100ms until it reports done, the process exits or ctx ends.
func poll(ctx context.Context, t *testing.T, p *runProcess, what string, check func() bool) {
	t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !check() {
		select {
		case <-p.exited:
			t.Fatalf("%s: choreo run exited (%v)\n%s", what, p.err, p.logTail())
		case <-ctx.Done():
			t.Fatalf("%s: %v\n%s", what, ctx.Err(), p.logTail())
		case <-tick.C:
		}
	}
}

func waitReady(ctx context.Context, t *testing.T, addr string, p *runProcess) {
	t.Helper()
	poll(ctx, t, p, "wait for /readyz", func() bool {
		code, _ := get(ctx, "http://"+addr+"/readyz")
		return code == http.StatusOK
	})
}

func waitFinal(ctx context.Context, t *testing.T, addr, id string, p *runProcess) string {
	t.Helper()
	var order struct{ Status string }
	poll(ctx, t, p, "wait for order "+id+" to be final", func() bool {
		code, body := get(ctx, "http://"+addr+"/v1/orders/"+id)
		return code == http.StatusOK && json.Unmarshal(body, &order) == nil &&
			(order.Status == "CONFIRMED" || order.Status == "CANCELLED")
	})
	return order.Status
}

// post POSTs body to addr's path and decodes the answer into v, failing unless it has status want.
func post(ctx context.Context, t *testing.T, addr, path, body string, want int, v any) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil || resp.StatusCode != want {
		t.Fatalf("POST %s: %d, %v", path, resp.StatusCode, err)
	}
}

func placeOrder(ctx context.Context, t *testing.T, addr string) string {
	t.Helper()
	var customer struct{ ID string }
	post(ctx, t, addr, "/v1/customers", `{"email":"crash@example.com","name":"Crash","password":"a-long-enough-password"}`, http.StatusCreated, &customer)
	body := `{"customer_id":"` + customer.ID + `","items":[{"sku":"KB-001","quantity":1}],"payment_token":"tok_visa",` +
		`"shipping_address":{"name":"Ada","line1":"1 Loop Rd","city":"Springfield","postal_code":"12345","country":"US"}}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/v1/orders", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("place order: %v", err)
	}
	defer resp.Body.Close()
	var placed struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&placed); err != nil || resp.StatusCode != http.StatusAccepted || placed.ID == "" {
		t.Fatalf("place order: %d, id %q, %v", resp.StatusCode, placed.ID, err)
	}
	return placed.ID
}

func get(ctx context.Context, url string) (int, []byte) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.Bytes()
}

// reachableTempDir is a temp dir the postgres user can reach when the test runs as root (the embedded
// cluster runs as that user then; t.TempDir's parent is private to root).
func reachableTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "choreo-crash-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}
