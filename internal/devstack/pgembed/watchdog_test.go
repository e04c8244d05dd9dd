package pgembed

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

const helperEnv = "PGEMBED_WATCHDOG_HELPER"

// TestWatchdogHelper is not a test: run by TestWatchdogStopsOrphanedServer
// as a child process, it starts a cluster, prints where it lives and exits
// without calling Stop, like a test binary that panicked.
func TestWatchdogHelper(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		t.Skip("helper process for TestWatchdogStopsOrphanedServer")
	}
	c, err := Start(context.Background(), Config{Log: zerolog.Nop()})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	pid, err := os.ReadFile(filepath.Join(c.dataDir, "postmaster.pid"))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	first, _, _ := strings.Cut(string(pid), "\n")
	fmt.Println("cluster", c.runDir, first)
	os.Exit(0)
}

func TestWatchdogStopsOrphanedServer(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^TestWatchdogHelper$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper: %v: %s", err, out)
	}
	var runDir string
	var pid int
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "cluster" {
			runDir = f[1]
			pid, _ = strconv.Atoi(f[2])
		}
	}
	if runDir == "" || pid == 0 {
		t.Fatalf("helper printed no cluster:\n%s", out)
	}

	waitGone(t, pid, runDir)
}

// waitGone polls until the server pid has exited and dir is removed.
func waitGone(t *testing.T, pid int, dir string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for range tick.C {
		_, statErr := os.Stat(dir)
		gone := errors.Is(statErr, fs.ErrNotExist)
		running := alive(pid)
		if gone && !running {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not cleaned up: dir present=%v, postmaster %d alive=%v", !gone, pid, running)
		}
	}
}

func postmasterPID(t *testing.T, c *Cluster) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.dataDir, "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(first)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func TestStopWithEndedContextLeavesCleanupToWatchdog(t *testing.T) {
	t.Parallel()
	c, err := Start(context.Background(), Config{Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	pid := postmasterPID(t, c)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Stop(ctx); err == nil {
		t.Error("Stop with an ended context reported success")
	}
	waitGone(t, pid, c.runDir)
}
