// Package kafkaembed runs a single-node Kafka broker inside the process
// (franz-go's kfake), in memory or persisted to a directory, for tests and
// `choreo run`. Topics are never created automatically.
package kafkaembed

import (
	"fmt"
	"net"
	"sync"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kfake"
)

// Config says where the broker listens and keeps its data.
type Config struct {
	// Addr is host:port to listen on, e.g. "127.0.0.1:9092"; port 0 picks
	// a free one. Empty means "127.0.0.1:0".
	Addr string
	// DataDir keeps topics, records and committed offsets across restarts;
	// empty keeps everything in memory.
	DataDir string
	Log     zerolog.Logger
}

// Broker is a running in-process broker.
type Broker struct {
	cfg  Config
	addr string // fixed at the first start so clients find the broker after Restart

	mu      sync.Mutex
	cluster *kfake.Cluster
}

// Start starts the broker; it accepts connections when Start returns.
func Start(cfg Config) (*Broker, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
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
		kfake.ListenFn(func(network, _ string) (net.Listener, error) { return net.Listen(network, b.addr) }),
		kfake.WithLogger(logger{b.cfg.Log}),
	}
	if b.cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(b.cfg.DataDir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return fmt.Errorf("start kafka broker on %s: %w", b.addr, err)
	}
	b.cluster = c
	return nil
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
