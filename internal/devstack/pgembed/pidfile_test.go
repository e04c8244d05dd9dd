package pgembed

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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

	_, err := Start(context.Background(), Config{DataDir: dir, Log: testLogger(t)})
	if err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("second Start on a data directory in use: err = %v, want 'already running'", err)
	}
	if got := queryString(t, running, "SELECT 'still up'"); got != "still up" {
		t.Errorf("first cluster after refused start: %q", got)
	}
}
