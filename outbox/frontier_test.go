package outbox

import "testing"

// TestFrontier walks the frontier through the cases that decide a hand-over: rows right above what is
// accounted for are taken; rows above an id nobody has seen are not, until a read sees it, or a read that
// comes after every transaction that could hold it shows it was never committed; rows a read returned are
// not taken again.
func TestFrontier(t *testing.T) {
	f := newFrontier()
	handOver := func(want, wantSeen bool, ids ...int64) {
		t.Helper()
		if take, seen := f.handOver(ids); take != want || seen != wantSeen {
			t.Fatalf("hand-over of %v: take %v, seen %v; want %v, %v (through %d, seen %v, horizons %v)",
				ids, take, seen, want, wantSeen, f.through, f.seen, f.horizon)
		}
	}
	through := func(want int64) {
		t.Helper()
		if f.through != want {
			t.Fatalf("accounted through %d, want %d (seen %v, horizons %v)", f.through, want, f.seen, f.horizon)
		}
	}
	wantsBound := func(want bool) {
		t.Helper()
		if f.wantsBound() != want {
			t.Fatalf("wants a bound: %v, want %v (horizons %v)", !want, want, f.horizon)
		}
	}

	// A fresh database: ids start at 1.
	handOver(true, false, 1, 2)
	handOver(true, false, 3)
	through(3)
	wantsBound(false)
	// 4 is taken by a transaction still in progress; 5 commits first.
	handOver(false, false, 5)
	f.read([]int64{5}, 100, 0, true) // the read the refusal asked for: 4 is invisible
	through(3)
	wantsBound(true)
	handOver(false, false, 6) // 4 is still missing
	// 4 commits and is handed over: 5, read before, follows it, and 6 can come next.
	handOver(true, false, 4)
	through(5)
	handOver(true, false, 6)
	through(6)

	// 7 is taken and rolled back: it never commits. 8 and 9 are refused until reads settle 7.
	handOver(false, false, 8)
	f.read([]int64{8}, 110, 0, true)
	wantsBound(true)
	handOver(false, false, 9)
	f.read([]int64{9}, 115, 120, true) // takes the bound: transaction 120 began after 7 was taken
	wantsBound(false)
	through(6)
	handOver(false, false, 10)
	f.read([]int64{10}, 119, 0, true) // a transaction older than 120 still runs: it may hold 7
	through(6)
	handOver(false, false, 11)
	f.read([]int64{11}, 120, 0, true) // every transaction older than 120 has ended: 7 never committed
	through(11)
	wantsBound(false) // the horizon of 10 is settled too
	handOver(true, false, 12)

	// A read that sees a transaction's rows first: their hand-over is dropped, not published again.
	f.read([]int64{13, 14}, 125, 0, true)
	handOver(false, true, 13, 14)
	through(14)

	// A read cut by its batch size settles only what it got to.
	handOver(false, false, 17) // 15 and 16 unseen
	f.read([]int64{17}, 126, 130, true)
	f.read(nil, 131, 0, false) // cut before any row: settles nothing
	through(14)
	f.read([]int64{15}, 131, 0, false) // cut after 15: 16 may be right behind it
	through(15)
	f.read(nil, 132, 0, true)
	through(17)

	// Ids of one transaction interleaved with another's: taken once the others are seen.
	handOver(false, false, 18, 20)
	f.read([]int64{18, 19, 20}, 133, 0, true)
	through(20)
	if len(f.seen) != 0 || len(f.horizon) != 0 {
		t.Fatalf("nothing pending, yet seen %v and horizons %v", f.seen, f.horizon)
	}
}

// TestFrontierKeepsFewHorizons: reads that keep finding gaps leave a bounded number of pending horizons,
// and the newest still settles every gap.
func TestFrontierKeepsFewHorizons(t *testing.T) {
	f := newFrontier()
	f.handOver([]int64{1})
	for i := range int64(100) {
		f.read([]int64{3 + i}, 10, 20+i, true) // 2 never shows (a long transaction holds xmin back), and every read sees one more
	}
	if len(f.horizon) > maxHorizons {
		t.Fatalf("%d pending horizons, want at most %d", len(f.horizon), maxHorizons)
	}
	if f.through != 1 {
		t.Fatalf("accounted through %d with 2 unsettled", f.through)
	}
	f.read(nil, 1000, 0, true)
	if f.through != 102 || len(f.horizon) != 0 {
		t.Fatalf("after a read past every horizon: through %d, horizons %v; want 102 and none", f.through, f.horizon)
	}
}
