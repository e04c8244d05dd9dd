package dirlock

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestAcquireRefusesASecondHolderAndNamesTheFirst(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	first, err := Acquire(context.Background(), path, time.Second, zerolog.Nop())
	if err != nil {
		t.Fatalf("first Acquire: %v", err)
	}
	t.Cleanup(func() { _ = first.Release() })

	_, err = Acquire(context.Background(), path, 100*time.Millisecond, zerolog.Nop())
	if err == nil {
		t.Fatal("second Acquire succeeded while the lock was held")
	}
	if want := "pid " + strconv.Itoa(os.Getpid()); !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not name the holder (%s)", err, want)
	}
}

func TestAcquireWaitsForTheHolderToLetGo(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	first, err := Acquire(context.Background(), path, time.Second, zerolog.Nop())
	if err != nil {
		t.Fatalf("first Acquire: %v", err)
	}
	got := make(chan error, 1)
	go func() {
		l, err := Acquire(context.Background(), path, time.Minute, zerolog.Nop())
		if err == nil {
			err = l.Release()
		}
		got <- err
	}()
	if err := first.Release(); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("waiting Acquire: %v", err)
	}
	if err := first.Release(); err != nil {
		t.Fatalf("second Release: %v", err)
	}
}

// The point of an flock: a holder killed with SIGKILL leaves nothing stale behind.
func TestLockOfAKilledProcessIsFree(t *testing.T) {
	if os.Getenv("DIRLOCK_HOLD") != "" {
		return // runs in the child, see holdInChild
	}
	path := filepath.Join(t.TempDir(), "x.lock")
	child := holdInChild(t, path)
	if _, err := Acquire(context.Background(), path, 50*time.Millisecond, zerolog.Nop()); err == nil {
		t.Fatal("Acquire succeeded while the child held the lock")
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	l, err := Acquire(context.Background(), path, 10*time.Second, zerolog.Nop())
	if err != nil {
		t.Fatalf("Acquire after the holder was killed: %v", err)
	}
	_ = l.Release()
}

// TestHoldLockHelper is the child of TestLockOfAKilledProcessIsFree: it takes the lock, says so, and
// waits to be killed.
func TestHoldLockHelper(t *testing.T) {
	path := os.Getenv("DIRLOCK_HOLD")
	if path == "" {
		return
	}
	if _, err := Acquire(context.Background(), path, time.Second, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("locked\n")
	select {}
}

func holdInChild(t *testing.T, path string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHoldLockHelper$")
	cmd.Env = append(os.Environ(), "DIRLOCK_HOLD="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("child did not take the lock: %q, %v", line, err)
	}
	return cmd
}
