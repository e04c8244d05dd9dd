package pgembed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const (
	logName      = "pgembed.log"
	tailBytes    = 4096
	portAttempts = 3
)

// startServer runs pg_ctl start. A free port picked by us can be taken by
// someone else before the server binds it, so that case is retried.
func (c *Cluster) startServer(ctx context.Context, cfg Config) error {
	for attempt := 1; ; attempt++ {
		port := cfg.Port
		if port == 0 {
			p, err := freePort()
			if err != nil {
				return err
			}
			port = p
		}
		s := settings{port: port, socketDir: c.runDir, durable: cfg.Durable, preload: cfg.Preload}
		if err := writeConf(c.dataDir, s, c.owner); err != nil {
			return err
		}
		tail, err := c.pgCtlStart(ctx)
		if err == nil {
			c.port = port
			c.log.Info().Str("data_dir", c.dataDir).Int("port", port).Bool("durable", cfg.Durable).Msg("postgres started")
			return nil
		}
		if cfg.Port != 0 || attempt == portAttempts || !strings.Contains(tail, "already in use") {
			return err
		}
		c.log.Debug().Int("port", port).Msg("port taken before postgres bound it; trying another")
	}
}

// pgCtlStart returns the server log written during this attempt, which
// explains a failure far better than pg_ctl's own output.
func (c *Cluster) pgCtlStart(ctx context.Context) (string, error) {
	logFile := filepath.Join(c.dataDir, logName)
	var from int64
	if fi, err := os.Stat(logFile); err == nil {
		from = fi.Size()
	}
	cmd := c.owner.command(ctx, c.runDir, c.pgCtl(), "-D", c.dataDir, "-w", "-t", "60", "-l", logFile, "start")
	cmd.WaitDelay = 5 * time.Second // pg_ctl's daemon must not hold our output pipe open
	out, err := cmd.CombinedOutput()
	if err == nil {
		return "", nil
	}
	tail := readTail(logFile, from)
	// pg_ctl may give up while the server still comes up: do not leave it behind.
	stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = c.pgCtlStop(stopCtx, "immediate") // best effort; the start error is the one to report
	return tail, fmt.Errorf("pg_ctl start on %s: %w: %s\nserver log:\n%s",
		c.dataDir, err, strings.TrimSpace(string(out)), tail)
}

func (c *Cluster) pgCtlStop(ctx context.Context, mode string) error {
	cmd := c.owner.command(ctx, c.runDir, c.pgCtl(), "-D", c.dataDir, "-w", "-t", "60", "-m", mode, "stop")
	cmd.WaitDelay = 5 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pg_ctl stop -m %s on %s: %w: %s", mode, c.dataDir, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Stop shuts the server down (fast mode: sessions are cut, data is kept)
// and removes the cluster's files if it is temporary. Later calls do nothing.
func (c *Cluster) Stop(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil
	}
	c.stopped = true
	if err := c.pgCtlStop(ctx, "fast"); err != nil {
		if c.pgCtlStop(ctx, "immediate") != nil {
			// Perhaps ctx ended: the watchdog, which needs no ctx, cleans up.
			c.watchdog.release()
			_ = c.lock.Release() // the next run stops what the watchdog has not
			return fmt.Errorf("stop postgres on port %d: %w", c.port, err)
		}
	}
	err := errors.Join(c.watchdog.cancel(), c.lock.Release())
	if rmErr := os.RemoveAll(c.runDir); rmErr != nil {
		err = errors.Join(err, fmt.Errorf("remove %s: %w", c.runDir, rmErr))
	}
	if err != nil {
		return fmt.Errorf("stop postgres on port %d: %w", c.port, err)
	}
	c.log.Info().Int("port", c.port).Msg("postgres stopped")
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port for postgres: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// readTail returns at most tailBytes of path from offset from on.
func readTail(path string, from int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no server log: %v)", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size()-from > tailBytes {
		from = fi.Size() - tailBytes
	}
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return fmt.Sprintf("(read server log: %v)", err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(read server log: %v)", err)
	}
	return strings.TrimSpace(string(b))
}
