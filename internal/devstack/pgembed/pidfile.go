package pgembed

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// How long clearPrevious gives a left-behind server: first to be stopped by
// its own watchdog (which acts when its run dies), then to obey pg_ctl stop.
const (
	orphanGrace       = 2 * time.Second
	orphanStopTimeout = 60 * time.Second
)

// clearPrevious readies the data directory for a start. It deletes a
// postmaster.pid whose process is not a running postgres (a crash or a
// reboot), and stops a server on this directory that a previous run left
// behind: killed before Stop, its watchdog may still be shutting that server
// down. It runs with the directory's lock held, so no live owner uses it.
func (c *Cluster) clearPrevious(ctx context.Context) error {
	pid, found, err := readPostmasterPID(c.dataDir)
	if err != nil || !found {
		return err
	}
	if pid > 0 && isPostgres(pid) {
		if !servesDir(pid, c.dataDir) {
			return fmt.Errorf("a server is already running on %s (pid %d): stop it with pg_ctl -D %s stop -m fast", c.dataDir, pid, c.dataDir)
		}
		if err := c.stopOrphan(ctx, pid); err != nil {
			return err
		}
		// A server that shut down removed its postmaster.pid; one that was
		// killed left it, and it is stale now.
		if pid, found, err = readPostmasterPID(c.dataDir); err != nil || !found {
			return err
		}
	}
	path := filepath.Join(c.dataDir, "postmaster.pid")
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale %s: %w", path, err)
	}
	c.log.Warn().Str("data_dir", c.dataDir).Int("pid", pid).Msg("removed stale postmaster.pid left by a server that is gone")
	return nil
}

// stopOrphan waits a little for a left-behind server to exit, then stops it
// with pg_ctl (fast mode: data is kept) and waits until it has gone.
func (c *Cluster) stopOrphan(ctx context.Context, pid int) error {
	c.log.Warn().Str("data_dir", c.dataDir).Int("pid", pid).Msg("a server left by a previous run is still up; stopping it before starting")
	if waitExit(ctx, pid, orphanGrace) {
		return nil
	}
	stopCtx, cancel := context.WithTimeout(ctx, orphanStopTimeout)
	defer cancel()
	stopErr := c.pgCtlStop(stopCtx, "fast")
	if waitExit(stopCtx, pid, orphanStopTimeout) {
		return nil
	}
	return fmt.Errorf("stop the server a previous run left on %s (pid %d): %w", c.dataDir, pid, errors.Join(stopErr, ctx.Err()))
}

// readPostmasterPID returns the pid in dataDir's postmaster.pid; found is
// false when there is no such file, pid is 0 when it holds no number.
func readPostmasterPID(dataDir string) (pid int, found bool, err error) {
	path := filepath.Join(dataDir, "postmaster.pid")
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read %s: %w", path, err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, _ = strconv.Atoi(strings.TrimSpace(first))
	return pid, true, nil
}

// servesDir reports whether the postmaster pid runs on dataDir: a postmaster
// works in its data directory. Without /proc (or the right to read it) we
// cannot tell, and say no: refusing to start beats stopping a stranger.
func servesDir(pid int, dataDir string) bool {
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return false
	}
	want, err := filepath.EvalSymlinks(dataDir)
	return err == nil && cwd == want
}

// waitExit polls until pid has exited, for at most max; it reports whether
// it did.
func waitExit(ctx context.Context, pid int, max time.Duration) bool {
	deadline := time.NewTimer(max)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for alive(pid) {
		select {
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return false
		case <-tick.C:
		}
	}
	return true
}

// isPostgres reports whether pid is a live postgres process. Without /proc
// we cannot tell, and assume it is: refusing to start beats two servers
// sharing one data directory.
func isPostgres(pid int) bool {
	if !alive(pid) {
		return false
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if errors.Is(err, fs.ErrNotExist) {
		_, procErr := os.Stat("/proc/self")
		return procErr != nil
	}
	if err != nil {
		return true
	}
	return strings.TrimSpace(string(comm)) == "postgres"
}

// alive reports whether pid exists and is not a zombie waiting to be reaped
// (a crashed postmaster can linger as one under a lazy init).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !errors.Is(err, fs.ErrNotExist)
	}
	i := strings.LastIndexByte(string(stat), ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}
