package pgembed

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/rs/zerolog"
)

// removeStalePID deletes postmaster.pid when the process it names is not a
// running postgres, so a data directory left by a crash or a reboot starts
// again. Postgres itself refuses to start when that pid now belongs to some
// unrelated live process.
func removeStalePID(dataDir string, log zerolog.Logger) error {
	path := filepath.Join(dataDir, "postmaster.pid")
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err == nil && pid > 0 && isPostgres(pid) {
		return fmt.Errorf("a server is already running on %s (pid %d): stop it with pg_ctl -D %s stop -m fast", dataDir, pid, dataDir)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale %s: %w", path, err)
	}
	log.Warn().Str("data_dir", dataDir).Int("pid", pid).Msg("removed stale postmaster.pid left by a server that is gone")
	return nil
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
