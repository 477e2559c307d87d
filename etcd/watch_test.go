package etcd

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"vmsauth/etcd/etcdtest"
)

// nextEvents reads watch responses until n events came, or fails.
func nextEvents(t *testing.T, w *Watcher, n int) []Event {
	t.Helper()
	var evs []Event
	for len(evs) < n {
		r, err := w.Next()
		if err != nil {
			t.Fatalf("after %d events: %v", len(evs), err)
		}
		evs = append(evs, r.Events...)
	}
	return evs
}

func TestWatch(t *testing.T) {
	cl := etcdtest.Start(t, etcdtest.Options{})
	c := newClient(t, cl, Config{})
	ctx := ctxT(t)
	before := put(t, c, "/w/a", "0").Header.Revision

	t.Run("OKFromNow", func(t *testing.T) {
		w, err := c.Watch(ctx, WatchRequest{Key: []byte("/w/"), RangeEnd: PrefixEnd([]byte("/w/")), PrevKV: true})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		if w.NextRevision() <= before {
			t.Fatalf("next revision %d, want after %d", w.NextRevision(), before)
		}
		p := put(t, c, "/w/a", "1")
		put(t, c, "/other", "x") // outside the range
		d, err := c.DeleteRange(ctx, DeleteRangeRequest{Key: []byte("/w/a")})
		if err != nil {
			t.Fatal(err)
		}
		evs := nextEvents(t, w, 2)
		if len(evs) != 2 {
			t.Fatalf("%d events, want 2", len(evs))
		}
		e := evs[0]
		if e.Type != EventPut || string(e.KV.Key) != "/w/a" || string(e.KV.Value) != "1" ||
			e.KV.ModRevision != p.Header.Revision || e.PrevKV == nil || string(e.PrevKV.Value) != "0" {
			t.Fatalf("put event %+v", e)
		}
		e = evs[1]
		if e.Type != EventDelete || string(e.KV.Key) != "/w/a" || e.KV.ModRevision != d.Header.Revision ||
			e.PrevKV == nil || string(e.PrevKV.Value) != "1" {
			t.Fatalf("delete event %+v", e)
		}
		if w.NextRevision() != d.Header.Revision+1 {
			t.Fatalf("next revision %d, want %d", w.NextRevision(), d.Header.Revision+1)
		}
	})
	t.Run("OKFromRevision", func(t *testing.T) {
		w, err := c.Watch(ctx, WatchRequest{Key: []byte("/w/a"), StartRevision: before})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		evs := nextEvents(t, w, 3)
		if evs[0].KV.ModRevision != before || string(evs[0].KV.Value) != "0" || evs[2].Type != EventDelete {
			t.Fatalf("history %+v", evs)
		}
	})
	t.Run("ErrWatchClosed", func(t *testing.T) {
		w, err := c.Watch(ctx, WatchRequest{Key: []byte("/w/a")})
		if err != nil {
			t.Fatal(err)
		}
		go func() { time.Sleep(50 * time.Millisecond); w.Close() }()
		if _, err := w.Next(); !errors.Is(err, ErrWatchClosed) {
			t.Fatalf("got %v, want ErrWatchClosed", err)
		}
	})
	t.Run("ErrCompacted", func(t *testing.T) {
		last := put(t, c, "/w/b", "x").Header.Revision
		if _, err := c.Compact(ctx, last, true); err != nil {
			t.Fatal(err)
		}
		w, err := c.Watch(ctx, WatchRequest{Key: []byte("/w/b"), StartRevision: before})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		_, err = w.Next()
		var ce *CompactedError
		if !errors.Is(err, ErrCompacted) || !errors.As(err, &ce) || ce.Revision != last {
			t.Fatalf("got %v, want compacted at %d", err, last)
		}
		if _, err := c.Range(ctx, RangeRequest{Key: []byte("/w/b"), Revision: before}); !errors.Is(err, ErrCompacted) {
			t.Fatalf("range at a compacted revision: %v", err)
		}
	})
}

// TestWatchBrokenResume kills the member serving a watch while a writer
// goes on: Next reports ErrWatchBroken, and a new watch from NextRevision
// (on another member, as the client moved on) delivers every write once, in
// order.
func TestWatchBrokenResume(t *testing.T) {
	cl := etcdtest.Start(t, etcdtest.Options{Members: 3})
	c := newClient(t, cl, Config{})
	ctx := ctxT(t)
	prefix := []byte("/resume/")

	w, err := c.Watch(ctx, WatchRequest{Key: prefix, RangeEnd: PrefixEnd(prefix)})
	if err != nil {
		t.Fatal(err)
	}
	served := cl.Index(w.Endpoint())

	// The writer uses a client of its own on the other members, so its
	// writes go on while the watch's member is down.
	var others []string
	for i, ep := range cl.Endpoints() {
		if i != served {
			others = append(others, ep)
		}
	}
	wc, err := New(Config{Endpoints: others})
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	const total = 200
	var wg sync.WaitGroup
	wg.Add(1)
	writeErr := make(chan error, 1)
	go func() {
		defer wg.Done()
		for i := 0; i < total; i++ {
			// A create guarded by the key's absence, so that a write that
			// may have been applied (the leader may be the member killed)
			// can be sent again without a second event.
			key := fmt.Appendf(append([]byte(nil), prefix...), "%03d", i)
			for {
				_, err := wc.Txn(ctx, TxnRequest{
					Compare: []Compare{CompareVersion(key, Equal, 0)},
					Success: []Op{{Put: &PutRequest{Key: key, Value: []byte("v")}}},
				})
				if err == nil {
					break
				}
				if !errors.Is(err, ErrMaybeApplied) && !errors.Is(err, ErrUnavailable) || ctx.Err() != nil {
					writeErr <- err
					return
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()

	seen := map[string]int{}
	var order []string
	broke := false
	for len(order) < total {
		r, err := w.Next()
		if err != nil {
			if !errors.Is(err, ErrWatchBroken) {
				t.Fatalf("got %v, want ErrWatchBroken", err)
			}
			if broke {
				t.Fatalf("broke twice: %v", err)
			}
			broke = true
			t.Logf("broken after %d events: %v", len(order), err)
			if w, err = c.Watch(ctx, WatchRequest{Key: prefix, RangeEnd: PrefixEnd(prefix), StartRevision: w.NextRevision()}); err != nil {
				t.Fatal(err)
			}
			if w.Endpoint() == cl.Members[served].ClientURL {
				t.Fatalf("watch resumed on the dead member %s", w.Endpoint())
			}
			continue
		}
		for _, e := range r.Events {
			seen[string(e.KV.Key)]++
			order = append(order, string(e.KV.Key))
		}
		if len(order) == 20 {
			cl.Kill(served)
		}
	}
	w.Close()
	wg.Wait()
	select {
	case err := <-writeErr:
		t.Fatal(err)
	default:
	}
	if !broke {
		t.Fatal("the watch never broke")
	}
	for i, k := range order {
		if want := fmt.Sprintf("%s%03d", prefix, i); k != want || seen[k] != 1 {
			t.Fatalf("event %d is %s (seen %d times), want %s once", i, k, seen[k], want)
		}
	}
}

// TestWatchNoLeader: a watch on a member that loses its majority ends with
// ErrNoLeader instead of going quiet, as the client asks etcd to require a
// leader.
func TestWatchNoLeader(t *testing.T) {
	cl := etcdtest.Start(t, etcdtest.Options{Members: 3})
	c := newClient(t, cl, Config{})
	ctx := ctxT(t)
	w, err := c.Watch(ctx, WatchRequest{Key: []byte("/x")})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	served := cl.Index(w.Endpoint())
	for i := range cl.Members {
		if i != served {
			cl.Kill(i)
		}
	}
	done := make(chan error, 1)
	go func() {
		_, err := w.Next()
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrWatchBroken) || !errors.Is(err, ErrNoLeader) {
			t.Fatalf("got %v, want ErrWatchBroken and ErrNoLeader", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watch went on without a leader")
	}
}
