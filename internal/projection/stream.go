package projection

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/internal/kafkaconn"
)

// stream reads partitions from given offsets with one kafka-go partition reader each, into one channel.
type stream struct {
	msgs   chan kafka.Message
	errs   chan error
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// streamConfig is how a stream reaches Kafka.
type streamConfig struct {
	brokers  []string
	conn     kafkaconn.Config
	maxWait  time.Duration // how long a fetch waits for new messages
	maxBytes int           // per fetch
	buffer   int           // messages buffered between the readers and the projector
}

// openStream starts reading every partition in from at its offset; Close stops it.
func openStream(ctx context.Context, cfg streamConfig, from positions) *stream {
	ctx, cancel := context.WithCancel(ctx)
	s := &stream{msgs: make(chan kafka.Message, cfg.buffer), errs: make(chan error, len(from)), cancel: cancel}
	for p, off := range from {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.read(ctx, cfg, p, off); err != nil && ctx.Err() == nil {
				s.errs <- err
			}
		}()
	}
	return s
}

func (s *stream) read(ctx context.Context, cfg streamConfig, p partition, off int64) error {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: cfg.brokers, Topic: p.topic, Partition: p.id, Dialer: cfg.conn.Dialer(),
		MinBytes: 1, MaxBytes: cfg.maxBytes, MaxWait: cfg.maxWait, QueueCapacity: 4096, ReadLagInterval: -1,
	})
	defer r.Close()
	if err := r.SetOffset(off); err != nil {
		return fmt.Errorf("seek %s/%d to %d: %w", p.topic, p.id, off, err)
	}
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if errors.Is(err, context.Canceled) || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read %s/%d: %w", p.topic, p.id, err)
		}
		select {
		case s.msgs <- m:
		case <-ctx.Done():
			return nil
		}
	}
}

// next returns up to max messages: it waits up to wait for the first, then takes what is buffered. An
// empty batch means none came within wait.
func (s *stream) next(ctx context.Context, max int, wait time.Duration) ([]kafka.Message, error) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	var batch []kafka.Message
	select {
	case m := <-s.msgs:
		batch = append(make([]kafka.Message, 0, min(max, len(s.msgs)+1)), m)
	case err := <-s.errs:
		return nil, err
	case <-timer.C:
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	for len(batch) < max {
		select {
		case m := <-s.msgs:
			batch = append(batch, m)
		default:
			return batch, nil
		}
	}
	return batch, nil
}

// Close stops the readers and waits for them.
func (s *stream) Close() {
	s.cancel()
	s.wg.Wait()
}
