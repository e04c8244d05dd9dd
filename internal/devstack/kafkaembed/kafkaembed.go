// Package kafkaembed runs a single-node Kafka broker inside the process
// (franz-go's kfake), in memory or persisted to a directory, for tests and
// `choreo run`. Topics are never created automatically.
package kafkaembed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/choreo-dev/choreo/internal/devstack/dirlock"
)

// Config says where the broker listens and keeps its data.
type Config struct {
	// Addr is host:port to listen on, e.g. "127.0.0.1:9092"; port 0 picks
	// a free one. Empty means "127.0.0.1:0".
	Addr string
	// DataDir keeps topics, records and committed offsets across restarts;
	// empty keeps everything in memory.
	DataDir string
	// PreviousRunWait bounds how long Start waits for a previous run still
	// shutting down to let go of DataDir and of Addr's port; 0 means 30
	// seconds.
	PreviousRunWait time.Duration
	Log             zerolog.Logger
}

// defaultPreviousRunWait is PreviousRunWait's default: longer than a
// choreo process takes to shut down gracefully.
const defaultPreviousRunWait = 30 * time.Second

// lockName is the file in DataDir whose flock marks the live owner: kfake
// itself does not stop two processes from writing one directory.
const lockName = "kafkaembed.lock"

// Broker is a running in-process broker.
type Broker struct {
	cfg  Config
	addr string // fixed at the first start so clients find the broker after Restart

	mu      sync.Mutex
	cluster *kfake.Cluster
	mem     atomic.Pointer[memListener] // the listener of the running cluster, for Dial
	lock    *dirlock.Lock
}

// Start starts the broker; it accepts connections when Start returns.
func Start(cfg Config) (*Broker, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.PreviousRunWait == 0 {
		cfg.PreviousRunWait = defaultPreviousRunWait
	}
	b := &Broker{cfg: cfg, addr: cfg.Addr}
	if err := b.start(); err != nil {
		return nil, err
	}
	b.addr = b.cluster.ListenAddrs()[0]
	b.cfg.Log.Info().Str("addr", b.addr).Str("data_dir", cfg.DataDir).Msg("kafka broker started")
	return b, nil
}

func (b *Broker) start() error {
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) { return b.listen(network) }),
		kfake.WithLogger(logger{b.cfg.Log}),
	}
	if b.cfg.DataDir != "" {
		if err := os.MkdirAll(b.cfg.DataDir, 0o700); err != nil {
			return fmt.Errorf("create kafka data directory %s: %w", b.cfg.DataDir, err)
		}
		lock, err := dirlock.Acquire(context.Background(), filepath.Join(b.cfg.DataDir, lockName), b.cfg.PreviousRunWait, b.cfg.Log)
		if err != nil {
			return fmt.Errorf("take kafka data directory %s: %w", b.cfg.DataDir, err)
		}
		b.lock = lock
		opts = append(opts, kfake.DataDir(b.cfg.DataDir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		_ = b.lock.Release() // the start error is the one to report
		b.lock = nil
		return fmt.Errorf("start kafka broker on %s: %w", b.addr, err)
	}
	b.cluster = c
	return nil
}

// listen binds the broker's address. A fixed port may still be held for a
// moment by a previous run that is going away, so that is retried for up to
// PreviousRunWait.
func (b *Broker) listen(network string) (net.Listener, error) {
	deadline := time.Now().Add(b.cfg.PreviousRunWait)
	for attempt := 0; ; attempt++ {
		l, err := net.Listen(network, b.addr)
		if err == nil {
			m := newMemListener(l)
			b.mem.Store(m)
			return m, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			return l, err
		}
		if attempt == 0 {
			b.cfg.Log.Info().Str("addr", b.addr).Dur("max_wait", b.cfg.PreviousRunWait).Msg("kafka port still in use; waiting for it to be freed")
		}
		time.Sleep(50 * time.Millisecond) // polling a port: there is nothing to wait on
	}
}

// Dial connects to the broker through an in-memory pipe, and to any other address over the network. Given
// to this process's clients (kafkaconn.Config.Dial), it spares each request and response the system calls
// and wake-ups of loopback TCP; other processes connect over TCP as before.
func (b *Broker) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	m := b.mem.Load()
	if address != b.addr || m == nil {
		var d net.Dialer
		return d.DialContext(ctx, network, address)
	}
	return m.dial(ctx)
}

// Brokers is the bootstrap list for clients.
func (b *Broker) Brokers() []string { return []string{b.addr} }

// Close stops the broker, saving its state when it has a DataDir. Later
// calls do nothing.
func (b *Broker) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cluster == nil {
		return
	}
	b.cluster.Close()
	b.cluster = nil
	if err := b.lock.Release(); err != nil {
		b.cfg.Log.Error().Err(err).Msg("release kafka data directory")
	}
	b.lock = nil
	b.cfg.Log.Info().Str("addr", b.addr).Msg("kafka broker stopped")
}

// Restart starts the broker again on the same address, closing it first if
// it runs: tests of Kafka outages Close it, watch, then Restart it. With a
// DataDir nothing is lost; in memory everything is.
func (b *Broker) Restart() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cluster != nil {
		b.cluster.Close()
		b.cluster = nil
		_ = b.lock.Release() // start takes it again
		b.lock = nil
	}
	if err := b.start(); err != nil {
		return err
	}
	b.cfg.Log.Info().Str("addr", b.addr).Msg("kafka broker restarted")
	return nil
}

// logger hands kfake's logs to zerolog at debug level: at any other level
// they are noise about every request.
type logger struct{ log zerolog.Logger }

func (l logger) Logf(level kfake.LogLevel, msg string, args ...any) {
	l.log.Debug().Str("kfake_level", level.String()).Msgf(msg, args...)
}
