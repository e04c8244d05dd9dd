package pgembed

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
)

func TestStartsOverStalePIDFile(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(searchableDir(t), "pg")
	stop(t, startCluster(t, Config{DataDir: dir, Log: testLogger(t)}))

	exited := exec.Command("true")
	if err := exited.Run(); err != nil {
		t.Fatal(err)
	}
	sleeper := exec.Command("sleep", "300")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })

	tests := []struct {
		name string
		pid  int
	}{
		{"process gone", exited.ProcessState.Pid()},
		{"pid reused by another program", sleeper.Process.Pid},
		{"garbage", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			content := fmt.Sprintf("%d\n%s\n", tt.pid, dir)
			if tt.pid == 0 {
				content = "not a pid\n"
			}
			pidFile := filepath.Join(dir, "postmaster.pid")
			if err := os.WriteFile(pidFile, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			c := startCluster(t, Config{DataDir: dir, Log: testLogger(t)})
			if got := queryString(t, c, "SELECT 'up'"); got != "up" {
				t.Errorf("query = %q", got)
			}
			stop(t, c)
		})
	}
}

func TestRefusesDataDirInUse(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(searchableDir(t), "pg")
	running := startCluster(t, Config{DataDir: dir, Log: testLogger(t)})

	_, err := Start(context.Background(), Config{DataDir: dir, PreviousRunWait: 200 * time.Millisecond, Log: testLogger(t)})
	if err == nil || !strings.Contains(err.Error(), "held by another running process") {
		t.Fatalf("second Start on a data directory in use: err = %v, want 'held by another running process'", err)
	}
	if got := queryString(t, running, "SELECT 'still up'"); got != "still up" {
		t.Errorf("first cluster after refused start: %q", got)
	}
}

const orphanHelperEnv = "PGEMBED_ORPHAN_HELPER"

// TestOrphanHelper is not a test: run by TestStartsAfterPreviousRunWasKilled
// as a child process, it starts a persistent cluster, writes a row, prints
// the postmaster and watchdog pids and waits to be killed.
func TestOrphanHelper(t *testing.T) {
	dir := os.Getenv(orphanHelperEnv)
	if dir == "" {
		t.Skip("helper process for TestStartsAfterPreviousRunWasKilled")
	}
	c, err := Start(context.Background(), Config{DataDir: dir, Durable: true, Log: zerolog.Nop()})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	conn, err := pgx.Connect(context.Background(), c.URL("postgres"))
	if err == nil {
		_, err = conn.Exec(context.Background(), "CREATE TABLE before_kill AS SELECT 'kept' AS v")
	}
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	fmt.Println("cluster", postmasterPID(t, c), c.watchdog.cmd.Process.Pid)
	select {}
}

// A run killed with SIGKILL leaves its server up (its watchdog is stopping it,
// or is gone too); the next Start on the same data directory must stop that
// server and start, with the data kept.
func TestStartsAfterPreviousRunWasKilled(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		killWatchdog bool
	}{
		{"watchdog still stopping it", false},
		{"watchdog gone too", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(searchableDir(t), "pg")
			cmd := exec.Command(os.Args[0], "-test.run=^TestOrphanHelper$")
			cmd.Env = append(os.Environ(), orphanHelperEnv+"="+dir)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
			var postmaster, watchdog int
			line, err := bufio.NewReader(out).ReadString('\n')
			if _, scanErr := fmt.Sscanf(line, "cluster %d %d", &postmaster, &watchdog); err != nil || scanErr != nil {
				t.Fatalf("helper printed %q (%v)", line, err)
			}
			t.Cleanup(func() { _ = syscall.Kill(postmaster, syscall.SIGKILL) })
			if tt.killWatchdog {
				if err := syscall.Kill(-watchdog, syscall.SIGKILL); err != nil {
					t.Fatalf("kill watchdog: %v", err)
				}
			}
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()

			c := startCluster(t, Config{DataDir: dir, Durable: true, Log: testLogger(t)})
			if got := queryString(t, c, "SELECT v FROM before_kill"); got != "kept" {
				t.Errorf("row written before the kill = %q, want kept", got)
			}
			if alive(postmaster) {
				t.Errorf("the previous run's postmaster %d still runs", postmaster)
			}
		})
	}
}
