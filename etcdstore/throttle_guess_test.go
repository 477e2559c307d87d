package etcdstore_test

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"vmsauth/auth"
	"vmsauth/etcd/etcdtest"
)

// TestSharedCounterStaleGuess: a box tries its swap on what it last wrote
// to a counter (see Shared.Update); when another box wrote the counter
// since, the box counts on what etcd holds, never on what it remembers:
// an event added, a refusal, and a take-back each see the other box's
// writes.
func TestSharedCounterStaleGuess(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	_, shared := sharedBoxes(t, c)
	const key, limit = "login/u7", 10
	var clock atomic.Int64
	// add counts one event on box i if fewer than limit are counted, and
	// returns how many fn last saw and the event.
	add := func(i int) (seen int, ev int64) {
		t.Helper()
		ev = clock.Add(1)
		err := shared[i].Update(t.Context(), key, auth.DefaultWindow, func(hits []int64) ([]int64, bool) {
			seen = len(hits)
			if seen >= limit {
				return nil, false
			}
			return append(slices.Clone(hits), ev), true
		})
		if err != nil {
			t.Fatal(err)
		}
		return seen, ev
	}
	undo := func(i int, ev int64) (found bool) {
		t.Helper()
		err := shared[i].Update(t.Context(), key, auth.DefaultWindow, func(hits []int64) ([]int64, bool) {
			j := slices.Index(hits, ev)
			found = j >= 0
			if !found {
				return nil, false
			}
			return slices.Delete(slices.Clone(hits), j, j+1), true
		})
		if err != nil {
			t.Fatal(err)
		}
		return found
	}

	for range 3 {
		add(0)
	}
	for range 5 {
		add(1)
	}
	// A last wrote 3 events; etcd holds 8.
	if seen, _ := add(0); seen != 8 {
		t.Fatalf("box A counted on %d events after B's, want 8", seen)
	}
	_, last := add(0)
	// Full on A's knowledge and etcd's. B takes one back: A must admit.
	if !undo(1, last) {
		t.Fatal("B did not find A's event to take back")
	}
	if seen, _ := add(0); seen != limit-1 {
		t.Fatalf("box A judged on %d events after B took one back, want %d", seen, limit-1)
	}
	// Now full: A refuses, B too.
	if seen, _ := add(1); seen != limit {
		t.Fatalf("box B saw %d events of a full counter", seen)
	}
	// A takes back an event B wrote after A's last write, on etcd's list.
	const first = 4 // B's first event
	if !undo(0, first) {
		t.Fatal("A did not find B's event to take back")
	}
	if seen, _ := add(1); seen != limit-1 {
		t.Fatalf("box B judged on %d events after A took one back, want %d", seen, limit-1)
	}
}

// TestSharedCounterTakeBackRace: parallel attempts over two boxes, each
// taken back on the other box, as a success counted on one box is taken
// back there while the other box writes the same login's counter: no more
// than the limit are ever counted at once, and every take-back finds its
// event, so the counter ends empty.
func TestSharedCounterTakeBackRace(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	_, shared := sharedBoxes(t, c)
	const key, limit, attempts = "login/u9", 10, 60
	var clock, allowed atomic.Int64
	var wg sync.WaitGroup
	for i := range attempts {
		wg.Go(func() {
			ev := clock.Add(1)
			took := false
			err := shared[i%2].Update(t.Context(), key, auth.DefaultWindow, func(hits []int64) ([]int64, bool) {
				if len(hits) > limit {
					t.Errorf("%d events counted, over the limit of %d", len(hits), limit)
				}
				took = len(hits) < limit
				if !took {
					return nil, false
				}
				return append(slices.Clone(hits), ev), true
			})
			if err != nil {
				t.Error(err)
				return
			}
			if !took {
				return
			}
			allowed.Add(1)
			found := false
			err = shared[(i+1)%2].Update(t.Context(), key, auth.DefaultWindow, func(hits []int64) ([]int64, bool) {
				j := slices.Index(hits, ev)
				found = j >= 0
				if !found {
					return nil, false
				}
				return slices.Delete(slices.Clone(hits), j, j+1), true
			})
			if err != nil || !found {
				t.Errorf("taking back event %d: found %v, %v", ev, found, err)
			}
		})
	}
	wg.Wait()
	if allowed.Load() < limit {
		t.Fatalf("only %d of %d attempts allowed, want at least %d", allowed.Load(), attempts, limit)
	}
	left := -1
	err := shared[0].Update(t.Context(), key, auth.DefaultWindow, func(hits []int64) ([]int64, bool) {
		left = len(hits)
		return nil, false
	})
	if err != nil || left != 0 {
		t.Fatalf("after every take-back the counter holds %d events (%v), want 0", left, err)
	}
}
