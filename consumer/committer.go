package consumer

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/choreo-dev/choreo/internal/retry"
)

// committer commits a generation's offsets in the background. Workers hand it, after each durable batch,
// the offset of the next message to read, and go on with their next batch instead of waiting a round trip
// to the group coordinator. Commits go out at most once per Config.CommitInterval, and what workers hand in
// meanwhile is merged: one request carries every partition of the member. Committing late is safe: the
// inbox has every applied event id, so a redelivery after a crash or a rebalance is skipped as a duplicate.
type committer struct {
	commit                 func(offsets map[string]map[int]int64) error
	log                    zerolog.Logger
	backoffMin, backoffMax time.Duration
	interval               time.Duration

	mu      sync.Mutex
	pending map[string]map[int]int64
	kick    chan struct{}
}

func newCommitter(commit func(map[string]map[int]int64) error, cfg Config, log zerolog.Logger) *committer {
	return &committer{commit: commit, log: log, backoffMin: cfg.BackoffMin, backoffMax: cfg.BackoffMax, interval: cfg.CommitInterval,
		pending: map[string]map[int]int64{}, kick: make(chan struct{}, 1)}
}

// add records that the messages of topic's partition before offset are applied.
func (c *committer) add(topic string, partition int, offset int64) {
	c.mu.Lock()
	if c.pending[topic] == nil {
		c.pending[topic] = map[int]int64{}
	}
	if offset > c.pending[topic][partition] {
		c.pending[topic][partition] = offset
	}
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// take returns the offsets added since the last take, or nil.
func (c *committer) take() map[string]map[int]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) == 0 {
		return nil
	}
	out := c.pending
	c.pending = map[string]map[int]int64{}
	return out
}

// run commits what is added until genCtx ends, then waits for the workers (done) to finish their last
// batches and commits what they added, so that the next owner of a partition starts where this one ended.
func (c *committer) run(genCtx context.Context, done <-chan struct{}) {
	for {
		select {
		case <-c.kick:
			c.flush(genCtx)
			select {
			case <-time.After(c.interval):
			case <-genCtx.Done():
			}
		case <-genCtx.Done():
			<-done
			c.flush(context.WithoutCancel(genCtx))
			return
		}
	}
}

// flush commits the pending offsets, retrying a few times; offsets it cannot commit are redelivered to the
// next owner and deduped there.
func (c *committer) flush(ctx context.Context) {
	offsets := c.take()
	if offsets == nil {
		return
	}
	for attempt := 0; attempt < 8; attempt++ {
		err := c.commit(offsets)
		if err == nil {
			return
		}
		if errors.Is(err, kafka.RebalanceInProgress) || errors.Is(err, kafka.IllegalGeneration) ||
			errors.Is(err, kafka.UnknownMemberId) || errors.Is(err, kafka.ErrGenerationEnded) {
			c.log.Info().Err(err).Msg("offsets not committed: the generation ended; the next owner dedupes the redelivery")
			return
		}
		c.log.Warn().Err(err).Msg("commit offsets failed; retrying")
		if !retry.Sleep(ctx, retry.Backoff(attempt, c.backoffMin, c.backoffMax)) {
			return
		}
	}
	c.log.Warn().Msg("gave up committing offsets; the events will be redelivered and deduped")
}
