// Package dirlock keeps one process at a time on a data directory of the dev stack. It is an flock,
// which the kernel releases when the holder dies however it dies (kill -9 included), so a crash never
// leaves a stale lock behind; a holder that is still shutting down is waited for, up to a bound.
package dirlock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// pollInterval is how often a held lock is tried again while waiting.
const pollInterval = 50 * time.Millisecond

// Lock is a held lock. Release it with Release.
type Lock struct{ f *os.File }

// Acquire takes the exclusive lock on the file at path, creating it if needed. When another process
// holds it, Acquire waits up to wait for that process to let go (a previous run still shutting down),
// then fails naming the holder.
func Acquire(ctx context.Context, path string, wait time.Duration, log zerolog.Logger) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file %s: %w", path, err)
	}
	deadline := time.Now().Add(wait)
	logged := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		holder := holderPID(path)
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("%s is held by another running process (pid %s) after waiting %s: stop it first", path, holder, wait)
		}
		if !logged {
			log.Info().Str("lock", path).Str("holder_pid", holder).Dur("max_wait", wait).Msg("waiting for the previous run to let go of its data")
			logged = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("wait for lock %s: %w", path, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
	// The pid is only for the message another process prints while it waits.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// holderPID is the pid the holder wrote into the lock file, or "unknown".
func holderPID(path string) string {
	b, err := os.ReadFile(path)
	if s := strings.TrimSpace(string(b)); err == nil && s != "" {
		return s
	}
	return "unknown"
}

// Release lets go of the lock. Later calls do nothing.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	f := l.f
	l.f = nil
	if err := f.Close(); err != nil { // closing the only descriptor releases the flock
		return fmt.Errorf("release lock %s: %w", f.Name(), err)
	}
	return nil
}
