package store

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"vmsauth/auth"
	"vmsauth/internal/touchq"
)

// TestTouchesReadAcrossFlush plays the race a read can lose: it notes the
// generation and reads the file, a flush writes the touch and drops it from
// the queue, and only then does the read look for a waiting touch. It must
// be told to read again, or it would see neither the file's new state nor
// the touch.
func TestTouchesReadAcrossFlush(t *testing.T) {
	ts := newTouches()
	h := auth.TokenHash{7}
	then := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	n := touchq.Touch{LastSeen: then.Add(time.Minute), Expires: then.Add(time.Hour), IP: "198.51.100.4"}
	if !ts.Note(h, n) {
		t.Fatal("an empty queue refused a touch")
	}

	gen := ts.Generation()
	s := &auth.Session{TokenHash: h, LastSeen: then, ExpiresAt: then.Add(time.Minute), ClientMeta: auth.ClientMeta{IP: "192.0.2.1"}} // as read
	ts.Written(ts.Snapshot())                                                                                                        // the flush lands
	if ts.Apply(gen, s) {
		t.Fatal("a read across a flush was taken as the whole truth")
	}

	if !ts.Note(h, touchq.Touch{LastSeen: n.LastSeen.Add(time.Minute), Expires: n.Expires}) {
		t.Fatal("note refused")
	}
	if !ts.Apply(ts.Generation(), s) || !s.LastSeen.Equal(n.LastSeen.Add(time.Minute)) || s.IP != "192.0.2.1" {
		t.Fatalf("a waiting touch without an address: %+v; the session's address must stay", s)
	}

	// A touch noted again while its flush runs stays queued.
	batch := ts.Snapshot()
	ts.Note(h, touchq.Touch{LastSeen: n.LastSeen.Add(2 * time.Minute), Expires: n.Expires})
	ts.Written(batch)
	if ts.Len() != 1 {
		t.Fatal("a flush dropped a touch noted after it began")
	}
}

// TestTouchQueueFull: with the queue full (its flusher stopped, as if the
// disk failed), a touch of a session not in it is written before
// TouchSession returns; one already queued is merged.
func TestTouchQueueFull(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "vmsauth.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now().UTC().Truncate(time.Second)
	u := &auth.User{Login: "alice", Name: "Alice", APIs: []auth.API{auth.APIClient}, CreatedAt: now, UpdatedAt: now}
	if err := db.CreateUser(t.Context(), u); err != nil {
		t.Fatal(err)
	}
	s := newBenchSession(u.ID)
	if err := db.CreateSession(t.Context(), s, auth.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	db.touches.stopLoop() // no flushes from here on
	for i := range maxPendingTouches {
		if err := db.TouchSession(t.Context(), auth.TokenHash{0xee, byte(i), byte(i >> 8)}, now, now, ""); err != nil {
			t.Fatal(err)
		}
	}
	if db.touches.Len() != maxPendingTouches {
		t.Fatalf("%d touches queued, want %d", db.touches.Len(), maxPendingTouches)
	}

	seen := now.Add(time.Hour)
	if err := db.TouchSession(t.Context(), s.TokenHash, seen, seen.Add(time.Hour), "198.51.100.8"); err != nil {
		t.Fatal(err)
	}
	if db.touches.Len() != maxPendingTouches {
		t.Fatal("a full queue grew")
	}
	err = db.bolt.View(func(tx *bolt.Tx) error {
		var got auth.Session
		if _, err := sessionState(tx, s.TokenHash, &got); err != nil {
			return err
		}
		if !got.LastSeen.Equal(seen) || got.IP != "198.51.100.8" {
			return fmt.Errorf("in the file: last seen %v from %s; want %v from 198.51.100.8", got.LastSeen, got.IP, seen)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Close still writes what waits; the made-up sessions are skipped.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if db.touches.Len() != 0 {
		t.Fatalf("Close left %d touches unwritten", db.touches.Len())
	}
}

// touchedSession is a database with one session, touched a minute after
// it began (the touch waiting to be written), and the time of the touch.
func touchedSession(t *testing.T) (*DB, string, *auth.Session, time.Time) {
	t.Helper()
	db, path, u := dbWithUser(t, Options{})
	s := newBenchSession(u.ID)
	if err := db.CreateSession(t.Context(), s, auth.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	seen := s.LastSeen.Add(time.Minute).UTC()
	if err := db.TouchSession(t.Context(), s.TokenHash, seen, seen.Add(time.Hour), ""); err != nil {
		t.Fatal(err)
	}
	return db, path, s, seen
}

// TestTouchesFlushInBackground: a touch reaches the file within a flush
// interval or so, without Close: a backup, which copies the file's
// committed state, shows it.
func TestTouchesFlushInBackground(t *testing.T) {
	db, _, s, seen := touchedSession(t)
	deadline := time.Now().Add(10 * touchFlushEvery)
	for {
		var copyOf bytes.Buffer
		if _, err := db.Backup(&copyOf); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "copy.db")
		if err := os.WriteFile(path, copyOf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Open(path, Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Session(t.Context(), s.ID)
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got.LastSeen.Equal(seen) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the touch is not in the file %v after it was noted", 10*touchFlushEvery)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTouchesUnderLoad: goroutines each touch and read their own sessions,
// more of them than touchFlushAt, so flushes run among the reads; every
// read sees the reader's last touch, and after Close and a reopen the file
// holds each session's last touch.
func TestTouchesUnderLoad(t *testing.T) {
	db, path, u := dbWithUser(t, Options{})
	const workers, each, rounds = 8, touchFlushAt / 4, 12
	var all [workers][]*auth.Session
	i := 0
	for _, s := range createSessions(t, db, u.ID, workers*each) {
		all[i%workers] = append(all[i%workers], s)
		i++
	}
	base := time.Now().UTC().Truncate(time.Second)
	seenAt := func(round int) time.Time { return base.Add(time.Duration(round) * time.Minute) }
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for r := range rounds {
				for _, s := range all[w] {
					if err := db.TouchSession(t.Context(), s.TokenHash, seenAt(r), seenAt(r).Add(time.Hour), ""); err != nil {
						t.Error(err)
						return
					}
					got, _, err := db.SessionByHash(t.Context(), s.TokenHash)
					if err != nil || !got.LastSeen.Equal(seenAt(r)) {
						t.Errorf("round %d: check sees %+v, %v", r, got, err)
						return
					}
				}
				if r%10 == 0 {
					list, err := db.UserSessions(t.Context(), u.ID)
					if err != nil {
						t.Error(err)
						return
					}
					for _, got := range list {
						for _, s := range all[w] {
							if got.ID == s.ID && !got.LastSeen.Equal(seenAt(r)) {
								t.Errorf("round %d: list shows %v, want %v", r, got.LastSeen, seenAt(r))
								return
							}
						}
					}
				}
			}
		})
	}
	wg.Wait()
	if db.touches.Generation() == 0 {
		t.Fatal("no flush ran among the reads; the test shows nothing of their race")
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	for w := range workers {
		for _, s := range all[w] {
			got, err := again.Session(t.Context(), s.ID)
			if err != nil || !got.LastSeen.Equal(seenAt(rounds-1)) || !got.ExpiresAt.Equal(seenAt(rounds-1).Add(time.Hour)) {
				t.Fatalf("after a reopen: %+v, %v; want last seen %v", got, err, seenAt(rounds-1))
			}
		}
	}
}

// TestTouchesAndClose: Closes at the same time all write what waits and
// succeed; a touch after Close fails rather than vanish.
func TestTouchesAndClose(t *testing.T) {
	db, path, s, seen := touchedSession(t)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if err := db.Close(); err != nil {
				t.Errorf("Close at the same time as another: %v", err)
			}
		})
	}
	wg.Wait()
	if err := db.TouchSession(t.Context(), s.TokenHash, seen.Add(time.Minute), seen.Add(time.Hour), ""); err == nil {
		t.Error("a touch after Close was taken")
	}
	if err := db.Close(); err != nil {
		t.Errorf("Close again: %v", err)
	}
	again, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if got, err := again.Session(t.Context(), s.ID); err != nil || !got.LastSeen.Equal(seen) {
		t.Fatalf("after Close: %+v, %v; want last seen %v", got, err, seen)
	}
}
