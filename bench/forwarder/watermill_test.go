package forwarder_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wkafka "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
)

// sqlTopic is the Watermill topic (the outbox table, watermill_outbox) the forwarder consumes; each run
// has a database of its own, so one name serves all.
const sqlTopic = "outbox"

// keyMetadata carries the Kafka key through the outbox; watermill-kafka's partitioning marshaler reads it.
const keyMetadata = "partition_key"

type watermillSchema int

const (
	// defaultSchema is DefaultPostgreSQLSchema with DefaultPostgreSQLOffsetsAdapter: rows stay, a consumer
	// group's offset (transaction id, offset) advances. This is what Watermill's forwarder example uses.
	defaultSchema watermillSchema = iota
	// queueSchema is PostgreSQLQueueSchema with PostgreSQLQueueOffsetsAdapter{DeleteOnAck: true}: rows
	// are deleted once forwarded, like choreo's outbox.
	queueSchema
)

func (s watermillSchema) adapters(batch int) (wsql.SchemaAdapter, wsql.OffsetsAdapter) {
	if s == queueSchema {
		return wsql.PostgreSQLQueueSchema{SubscribeBatchSize: batch}, wsql.PostgreSQLQueueOffsetsAdapter{DeleteOnAck: true}
	}
	return wsql.DefaultPostgreSQLSchema{SubscribeBatchSize: batch}, wsql.DefaultPostgreSQLOffsetsAdapter{}
}

// caughtUpQuery is true once the subscriber acknowledged every row of the outbox.
func (s watermillSchema) caughtUpQuery() string {
	if s == queueSchema {
		return `SELECT NOT EXISTS (SELECT 1 FROM "watermill_` + sqlTopic + `")`
	}
	return `SELECT coalesce((SELECT offset_acked FROM "watermill_offsets_` + sqlTopic + `" WHERE consumer_group = '') =
		(SELECT max("offset") FROM "watermill_` + sqlTopic + `"), false)`
}

// saramaConfig is the Kafka producer configuration of both sarama contenders: watermill-kafka's default
// sync publisher config with every replica acknowledging, as choreo's writer requires (acks=all). Sarama
// sends a message as soon as it is handed one (no linger) and compresses nothing, like kafka-go here.
func saramaConfig() *sarama.Config {
	c := wkafka.DefaultSaramaSyncPublisherConfig()
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Metadata.Retry.Backoff = 250 * time.Millisecond // the default 2s only matters while a topic is new
	return c
}

// watermillForwarder is Watermill's outbox: forwarder.NewPublisher over the watermill-sql publisher in
// the business transaction, and a forwarder.Forwarder that consumes the SQL topic with the watermill-sql
// subscriber and publishes to Kafka with the watermill-kafka publisher.
type watermillForwarder struct {
	env       runEnv
	log       watermill.LoggerAdapter
	schema    wsql.SchemaAdapter
	offsets   wsql.OffsetsAdapter
	caughtUp  string // a query that is true once every row is acknowledged in the database
	sub       *wsql.Subscriber
	pub       *wkafka.Publisher
	fwd       *forwarder.Forwarder
	forwarded atomic.Int64
	stopping  atomic.Bool
	want      int64
	done      chan struct{}
	stop      context.CancelFunc
	stopped   chan error
}

func newWatermill(s watermillSchema) func(env runEnv) (run, error) {
	return func(env runEnv) (run, error) {
		w := &watermillForwarder{env: env, done: make(chan struct{})}
		w.log = watermillLogger{log: env.log, stopping: &w.stopping}
		w.schema, w.offsets = s.adapters(env.cfg.wmBatch)
		w.caughtUp = s.caughtUpQuery()
		var err error
		w.sub, err = wsql.NewSubscriber(wsql.BeginnerFromPgx(env.pool), wsql.SubscriberConfig{
			SchemaAdapter:  w.schema,
			OffsetsAdapter: w.offsets,
			PollInterval:   env.cfg.wmPoll,
			// The backlog is ready before the forwarder starts, so no table is created while it runs.
			InitializeSchema: false,
		}, w.log)
		if err != nil {
			return nil, fmt.Errorf("watermill sql subscriber: %w", err)
		}
		if err := w.sub.SubscribeInitialize(sqlTopic); err != nil {
			return nil, fmt.Errorf("create watermill outbox tables: %w", err)
		}
		w.pub, err = wkafka.NewPublisher(wkafka.PublisherConfig{
			Brokers: env.brokers,
			Marshaler: wkafka.NewWithPartitioningMarshaler(func(_ string, msg *message.Message) (string, error) {
				return msg.Metadata.Get(keyMetadata), nil
			}),
			OverwriteSaramaConfig: saramaConfig(),
		}, w.log)
		if err != nil {
			return nil, fmt.Errorf("watermill kafka publisher: %w", err)
		}
		w.fwd, err = forwarder.NewForwarder(w.sub, w.pub, w.log, forwarder.Config{
			ForwarderTopic: sqlTopic,
			Middlewares:    []message.HandlerMiddleware{w.count},
		})
		if err != nil {
			return nil, errors.Join(fmt.Errorf("watermill forwarder: %w", err), w.pub.Close())
		}
		return w, nil
	}
}

// count notes every message the forwarder published (Kafka acknowledged it: the publisher is synchronous).
func (w *watermillForwarder) count(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		out, err := h(msg)
		if err == nil && w.forwarded.Add(1) == w.want {
			close(w.done)
		}
		return out, err
	}
}

// load publishes through the decorated SQL publisher in transactions of cfg.batch messages, as a service
// would publish its events in its business transactions.
func (w *watermillForwarder) load(ctx context.Context, msgs []kafka.Message) error {
	return chunks(msgs, w.env.cfg.batch, func(batch []kafka.Message) error {
		tx, err := w.env.pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		sqlPub, err := wsql.NewPublisher(wsql.TxFromPgx(tx), wsql.PublisherConfig{SchemaAdapter: w.schema}, w.log)
		if err != nil {
			return err
		}
		pub := forwarder.NewPublisher(sqlPub, forwarder.PublisherConfig{ForwarderTopic: sqlTopic})
		wms := make([]*message.Message, len(batch))
		for i, m := range batch {
			wm := message.NewMessage(watermill.NewUUID(), m.Value)
			wm.SetContext(ctx)
			for _, h := range m.Headers {
				wm.Metadata.Set(h.Key, string(h.Value))
			}
			wm.Metadata.Set(keyMetadata, string(m.Key))
			wms[i] = wm
		}
		if err := pub.Publish(batch[0].Topic, wms...); err != nil {
			return err
		}
		return tx.Commit(ctx)
	})
}

// drain runs the forwarder until it published n messages; it keeps running until close, so its
// shutdown is not timed.
func (w *watermillForwarder) drain(ctx context.Context, n int) error {
	w.want = int64(n)
	runCtx, cancel := context.WithCancel(context.Background())
	w.stop, w.stopped = cancel, make(chan error, 1)
	go func() { w.stopped <- w.fwd.Run(runCtx) }()
	select {
	case <-w.done:
		return nil
	case err := <-w.stopped:
		w.stopped <- err
		return fmt.Errorf("watermill forwarder stopped after %d of %d: %v", w.forwarded.Load(), n, err)
	case <-ctx.Done():
		return fmt.Errorf("watermill forwarder published %d of %d: %w", w.forwarded.Load(), n, ctx.Err())
	}
}

func (w *watermillForwarder) close() error {
	var err error
	if w.stop != nil {
		err = waitFor(context.Background(), w.env.pool, "the forwarder to acknowledge every row", w.caughtUp)
		w.stopping.Store(true)
		err = errors.Join(err, w.fwd.Close())
		w.stop()
		err = errors.Join(err, <-w.stopped)
	}
	return errors.Join(err, w.sub.Close(), w.pub.Close())
}

// saramaOneByOne sends the messages with the producer Watermill's Kafka publisher uses, configured the
// same, one synchronous SendMessage at a time as Watermill's forwarder does, without any outbox: the
// ceiling for Watermill's forwarder.
type saramaOneByOne struct {
	p    sarama.SyncProducer
	msgs []kafka.Message
}

func newSaramaOneByOne(env runEnv) (run, error) {
	p, err := sarama.NewSyncProducer(env.brokers, saramaConfig())
	if err != nil {
		return nil, fmt.Errorf("sarama sync producer: %w", err)
	}
	return &saramaOneByOne{p: p}, nil
}

func (s *saramaOneByOne) load(_ context.Context, msgs []kafka.Message) error {
	s.msgs = msgs
	return nil
}

func (s *saramaOneByOne) drain(ctx context.Context, _ int) error {
	for i, m := range s.msgs {
		if ctx.Err() != nil {
			return fmt.Errorf("sent %d of %d: %w", i, len(s.msgs), ctx.Err())
		}
		pm := &sarama.ProducerMessage{Topic: m.Topic, Key: sarama.ByteEncoder(m.Key), Value: sarama.ByteEncoder(m.Value)}
		for _, h := range m.Headers {
			pm.Headers = append(pm.Headers, sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value})
		}
		if _, _, err := s.p.SendMessage(pm); err != nil {
			return fmt.Errorf("send message %d: %w", i, err)
		}
	}
	return nil
}

func (s *saramaOneByOne) close() error { return s.p.Close() }

// watermillLogger hands Watermill's errors to zerolog; its per-message debug and trace logs are dropped
// before any formatting so they cost nothing. Once the forwarder is being stopped (stopping is set), an
// idle poll's transaction cut short is expected and errors are logged at debug level only.
type watermillLogger struct {
	log      zerolog.Logger
	stopping *atomic.Bool
}

func (l watermillLogger) Error(msg string, err error, fields watermill.LogFields) {
	ev := l.log.Error()
	if l.stopping.Load() {
		ev = l.log.Debug()
	}
	ev.Err(err).Fields(map[string]any(fields)).Msg(msg)
}
func (l watermillLogger) Info(msg string, fields watermill.LogFields) {
	l.log.Debug().Fields(map[string]any(fields)).Msg(msg)
}
func (watermillLogger) Debug(string, watermill.LogFields) {}
func (watermillLogger) Trace(string, watermill.LogFields) {}
func (l watermillLogger) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return watermillLogger{log: l.log.With().Fields(map[string]any(fields)).Logger(), stopping: l.stopping}
}
