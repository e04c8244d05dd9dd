package consumer

import (
	"context"
	"errors"
	"time"
)

// combiner applies, in one transaction, the batches that the workers of a consumer have ready at the same
// time: a form of group commit. Each partition's worker still reads, orders and retries its own messages;
// when several workers are ready together (the load rises, or the transaction before took a while), their
// batches share one BEGIN, one inbox statement, one stock update and one COMMIT instead of paying for each.
// At a trickle it changes nothing: a lone batch runs alone, as before.
//
// Only the first try of a batch is combined. Should a combined transaction fail, it is rolled back as a
// whole and every worker in it tries its batch again on its own, where a failing handler is isolated and
// retried as usual; so one partition's poison or retries never hold up the others for longer than the one
// combined attempt. A transaction of the combiner still running after Config.CombineTimeout is cancelled the
// same way (even a lone batch's: the combiner must not be held), so a handler that blocks (a lock held
// elsewhere, a slow dependency) holds up the other partitions for that long at most, and then only its own.
type combiner struct {
	w  *worker // runs the combined batches; its own attempts and log, not a partition's
	in chan *combineRequest
}

type combineRequest struct {
	batch []routed
	done  chan error // nil: applied and committed
}

// errApplyAlone tells a worker that the combined transaction its batch was in failed.
var errApplyAlone = errors.New("the combined batch failed: apply alone")

func newCombiner(c *Consumer) *combiner {
	return &combiner{w: &worker{c: c, log: c.log, attempts: map[msgKey]int{}, scopeErr: map[msgKey]error{}}, in: make(chan *combineRequest)}
}

// apply applies batch in a transaction combined with the batches other workers have ready, and reports
// nil once it is committed; errApplyAlone when the combined transaction failed; or, when batch was alone in
// it, the error applyBatch reports.
func (cb *combiner) apply(ctx context.Context, batch []routed) error {
	req := &combineRequest{batch: batch, done: make(chan error, 1)}
	select {
	case cb.in <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-req.done // the combiner always answers a request it took
}

// run combines requests until ctx ends: it takes one, adds those sent until Config.ApplyInterval has passed
// since the previous transaction started and those sent meanwhile (workers wait in the send while a
// transaction runs), and applies them together.
func (cb *combiner) run(ctx context.Context) {
	var reqs []*combineRequest
	var batch []routed
	var started time.Time
	pace := time.NewTimer(time.Hour)
	defer pace.Stop()
	take := func(req *combineRequest) { reqs, batch = append(reqs, req), append(batch, req.batch...) }
	most := 4 * cb.w.c.cfg.BatchSize // messages of one combined transaction
	for {
		reqs, batch = reqs[:0], batch[:0]
		select {
		case req := <-cb.in:
			take(req)
		case <-ctx.Done():
			return
		}
		if wait := time.Until(started.Add(cb.w.c.cfg.ApplyInterval)); wait > 0 {
			pace.Reset(wait)
		gather:
			for len(batch) < most {
				select {
				case req := <-cb.in:
					take(req)
				case <-pace.C:
					break gather
				case <-ctx.Done(): // apply what was taken: it fails at once, and every request is answered
					break gather
				}
			}
			pace.Stop()
		}
	more:
		for len(batch) < most {
			select {
			case req := <-cb.in:
				take(req)
			default:
				break more
			}
		}
		started = time.Now()
		tctx, cancel := context.WithTimeout(ctx, cb.w.c.cfg.CombineTimeout)
		_, err := cb.w.applyBatch(tctx, batch, -1)
		timedOut := tctx.Err() != nil && ctx.Err() == nil
		cancel()
		// A lone batch's failure is its own, as if it had run alone; but one that ran out of time goes on
		// alone, where it may take as long as it needs without holding up the combiner.
		if err != nil && (len(reqs) > 1 || timedOut) {
			err = errApplyAlone
		}
		for _, req := range reqs {
			req.done <- err
		}
	}
}
