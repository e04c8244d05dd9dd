package outbox

// frontier is what the relay knows of the outbox's ids: which it has accounted for, so that it can tell
// whether the rows a committed transaction hands it (LocalCommits) are exactly what a read would return
// next, and may be published without reading them back.
//
// An id is accounted for once the relay has read it or been handed it, or once it knows the id will never
// be read: it was never committed, or was published and deleted before (by this relay or an earlier one).
// Ids are taken at insert time, so a transaction may commit after higher ids were read; a read returns
// such a late row before any later row (see readStage), and a hand-over must not overtake it either.
// It may be taken only if every id below its highest is accounted for.
//
// An id the relay has not seen is known never to be read by an argument on transaction ids. Each outbox
// row's transaction takes its transaction id before the row takes its outbox id (migration 006), and ids
// and transaction ids are both handed out in increasing order. So every id up to the highest the relay has
// seen belongs to a transaction whose id is below any transaction id assigned after the relay saw that
// highest one: the relay's reads take such a bound (pg_current_xact_id, in a transaction that does not
// wait for its commit) when the frontier asks for one. A later read whose snapshot's xmin is at or above
// the bound comes after all of those transactions ended: a row among them that committed is visible to
// it, and is returned unless the read stopped short of its id. What it does not return is accounted for.
// (A snapshot's own xmax is no such bound: it is one past the newest transaction that completed, and a
// transaction with a higher id may already be running and hold an id below.)
type frontier struct {
	through int64              // every id up to this one is accounted for
	seen    map[int64]struct{} // ids above through that were read or handed over
	highest int64              // the highest id read or handed over
	horizon []horizon          // pending: oldest first, through and bound ascending
}

// horizon says that every id up to through is accounted for by a read whose snapshot's xmin is at least
// bound (0 while the bound is not yet taken).
type horizon struct {
	through, bound int64
}

// maxHorizons bounds the pending horizons: past it the second newest is dropped, since the newest covers
// its ids too (at a later bound).
const maxHorizons = 8

func newFrontier() *frontier { return &frontier{seen: map[int64]struct{}{}} }

// handOver reports whether the rows of ids (one committed transaction's, ascending) may be published
// without a read, and if so accounts for them. seen is true when they are accounted for already: a read
// returned them (a read returns a transaction's rows together unless a batch ended among them, and then
// the reads go on past what was cut), since a committed row is never settled as unread. They are not to
// be published again.
func (f *frontier) handOver(ids []int64) (take, seen bool) {
	for _, id := range ids {
		if _, ok := f.seen[id]; ok || id <= f.through {
			return false, true
		}
	}
	next, i := f.through+1, 0
	for i < len(ids) {
		if ids[i] == next {
			i++
		} else if _, ok := f.seen[next]; !ok {
			return false, false // an id below is unaccounted for: it may still commit
		}
		next++
	}
	f.see(ids)
	return true, false
}

// read records a read: the ids it returned, ascending; its snapshot's xmin; a transaction id it took after
// its snapshot, or 0 (see wantsBound); and whether it returned every row it could see (it did not stop at
// the batch's count or size).
//
// It returns an id the read returned that was accounted for already, or 0. Reads skip the rows in flight,
// and every other id up to through was settled as never to be read: such an id means the ids were not
// taken in transaction order, and the frontier's argument does not hold.
func (f *frontier) read(ids []int64, xmin, bound int64, complete bool) (below int64) {
	for _, id := range ids {
		if id <= f.through && below == 0 {
			below = id
		}
	}
	f.see(ids)
	// Up to which id the read returned every committed row it did not skip as in flight (the lowest come
	// first).
	covered := f.highest
	if !complete {
		covered = 0
		if len(ids) > 0 {
			covered = ids[len(ids)-1]
		}
	}
	for len(f.horizon) > 0 && f.horizon[0].bound != 0 && f.horizon[0].bound <= xmin {
		h := f.horizon[0]
		if h.through > covered {
			f.raise(covered)
			break // the rest waits for a read that gets that far
		}
		f.horizon = f.horizon[1:]
		f.raise(h.through)
	}
	if f.through < f.highest && (len(f.horizon) == 0 || f.horizon[len(f.horizon)-1].through < f.highest) {
		f.horizon = append(f.horizon, horizon{through: f.highest})
		if n := len(f.horizon); n > maxHorizons {
			f.horizon = append(f.horizon[:n-2], f.horizon[n-1])
		}
	}
	if bound != 0 { // taken after everything seen so far: it bounds every pending horizon still open
		for i := range f.horizon {
			if f.horizon[i].bound == 0 {
				f.horizon[i].bound = bound
			}
		}
	}
	return below
}

// wantsBound reports whether the next read should take a transaction id after its snapshot, to bound the
// transactions that may hold ids the relay has not seen.
func (f *frontier) wantsBound() bool {
	return len(f.horizon) > 0 && f.horizon[len(f.horizon)-1].bound == 0
}

// maxSeen bounds the ids remembered above through. Past it the frontier starts over, as a relay that
// becomes active does: it accounts for nothing above 0 until a read's xmin passes a new bound, and then
// for every id below the highest it read since, the rows it read before included (they are published
// or in flight). Ids pile up only while a gap stays open, which a transaction that holds the cluster's
// xmin back keeps open.
const maxSeen = 100_000

// see accounts for ids, which were read or handed over.
func (f *frontier) see(ids []int64) {
	if len(f.seen)+len(ids) > maxSeen {
		*f = *newFrontier()
	}
	for _, id := range ids {
		if id > f.through {
			f.seen[id] = struct{}{}
		}
		f.highest = max(f.highest, id)
	}
	f.raise(f.through)
}

// raise accounts for every id up to through, then for those seen right above it.
func (f *frontier) raise(through int64) {
	if through > f.through {
		for id := range f.seen {
			if id <= through {
				delete(f.seen, id)
			}
		}
		f.through = through
	}
	for {
		if _, ok := f.seen[f.through+1]; !ok {
			break
		}
		delete(f.seen, f.through+1)
		f.through++
	}
	for len(f.horizon) > 0 && f.horizon[0].through <= f.through { // settled by what was seen
		f.horizon = f.horizon[1:]
	}
}
