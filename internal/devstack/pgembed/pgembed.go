// Package pgembed runs a private PostgreSQL cluster from the server binaries
// installed on the machine (initdb, pg_ctl): a throwaway one for tests, or a
// persistent one for `choreo run`. It listens on 127.0.0.1 only.
package pgembed

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/choreo-dev/choreo/internal/devstack/dirlock"
)

// Config says where the cluster keeps its data and how it runs.
type Config struct {
	// DataDir is empty for a temporary cluster removed by Stop; otherwise the
	// cluster persists there and is reused when already initialised.
	DataDir string
	// Port is the TCP port on 127.0.0.1; 0 picks a free one.
	Port int
	// Durable keeps Postgres' crash-safety defaults. When false, fsync,
	// synchronous_commit and full_page_writes are off, for fast tests.
	Durable bool
	// Preload are libraries the server loads at start (shared_preload_libraries), such as
	// pg_stat_statements for a benchmark that counts statements.
	Preload []string
	// PreviousRunWait bounds how long Start waits for another process that
	// holds DataDir (a previous run still shutting down) to let go; 0 means
	// 30 seconds.
	PreviousRunWait time.Duration
	Log             zerolog.Logger
}

// defaultPreviousRunWait is PreviousRunWait's default: longer than a
// choreo process takes to shut down gracefully.
const defaultPreviousRunWait = 30 * time.Second

// lockName is the file in the data directory whose flock marks the live
// owner of the cluster (see internal/devstack/dirlock).
const lockName = "pgembed.lock"

// Cluster is a running server. Stop it with Stop.
type Cluster struct {
	log       zerolog.Logger
	binDir    string
	dataDir   string
	runDir    string // private: holds the unix socket, and the data when temporary
	temporary bool
	port      int
	owner     *account
	watchdog  *watchdog
	lock      *dirlock.Lock

	mu      sync.Mutex
	stopped bool
}

// Start initialises the data directory if needed and starts the server,
// returning once it accepts connections.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	binDir, err := findBinDir(os.Getenv("PATH"), debianRoot)
	if err != nil {
		return nil, err
	}
	owner, err := serverAccount()
	if err != nil {
		return nil, err
	}
	runDir, err := os.MkdirTemp("", "pgembed-")
	if err != nil {
		return nil, fmt.Errorf("create private directory for postgres: %w", err)
	}
	c := &Cluster{
		log:       cfg.Log.With().Str("component", "pgembed").Logger(),
		binDir:    binDir,
		runDir:    runDir,
		temporary: cfg.DataDir == "",
		owner:     owner,
	}
	if err := c.start(ctx, cfg); err != nil {
		if c.watchdog != nil {
			_ = c.watchdog.cancel() // the start error is the one to report
		}
		_ = c.lock.Release()
		_ = os.RemoveAll(runDir)
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context, cfg Config) error {
	if err := c.owner.chown(c.runDir); err != nil {
		return err
	}
	if err := c.prepareDataDir(ctx, cfg.DataDir); err != nil {
		return err
	}
	wait := cfg.PreviousRunWait
	if wait == 0 {
		wait = defaultPreviousRunWait
	}
	// With the lock held no live process owns this data directory, so a
	// server still running on it was left by a run that died (clearPrevious).
	lock, err := dirlock.Acquire(ctx, filepath.Join(c.dataDir, lockName), wait, c.log)
	if err != nil {
		return fmt.Errorf("take data directory %s: %w", c.dataDir, err)
	}
	c.lock = lock
	if err := c.clearPrevious(ctx); err != nil {
		return err
	}
	mode := "fast"
	if c.temporary {
		mode = "immediate"
	}
	w, err := startWatchdog(c.owner, c.pgCtl(), c.dataDir, mode, c.runDir)
	if err != nil {
		return err
	}
	c.watchdog = w
	return c.startServer(ctx, cfg)
}

func (c *Cluster) prepareDataDir(ctx context.Context, dir string) error {
	if c.temporary {
		c.dataDir = filepath.Join(c.runDir, "data")
	} else {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return fmt.Errorf("resolve data directory %s: %w", dir, err)
		}
		c.dataDir = abs
		if err := os.MkdirAll(abs, 0o700); err != nil {
			return fmt.Errorf("create data directory %s: %w", abs, err)
		}
		if err := c.owner.checkReachable(abs); err != nil {
			return err
		}
		if err := c.owner.chown(abs); err != nil {
			return err
		}
	}
	_, err := os.Stat(filepath.Join(c.dataDir, "PG_VERSION"))
	if err == nil {
		c.log.Debug().Str("data_dir", c.dataDir).Msg("reusing initialised data directory")
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("check data directory %s: %w", c.dataDir, err)
	}
	return c.initdb(ctx)
}

func (c *Cluster) initdb(ctx context.Context) error {
	cmd := c.owner.command(ctx, c.runDir, filepath.Join(c.binDir, "initdb"),
		"-D", c.dataDir, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-instructions")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("initdb %s: %w: %s", c.dataDir, err, out)
	}
	c.log.Debug().Str("data_dir", c.dataDir).Msg("initialised data directory")
	return nil
}

func (c *Cluster) pgCtl() string { return filepath.Join(c.binDir, "pg_ctl") }

// BinDir is the directory of the server binaries in use.
func (c *Cluster) BinDir() string { return c.binDir }

// Port is the TCP port the server listens on at 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// URL is the connection URL of database on this cluster, as user postgres.
func (c *Cluster) URL(database string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, url.PathEscape(database))
}
