package store

import (
	"context"
	"errors"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"vmsauth/auth"
	"vmsauth/internal/touchq"
)

// Activity (a session's last use, its extended expiry, its latest address)
// is written behind: TouchSession notes it in memory and returns, and a
// flush writes every noted touch in one transaction, once a second or as
// soon as touchFlushAt of them wait. A token check that touches so no
// longer waits for a disk sync, which on a box's flash can take tens of
// milliseconds, and a thousand touches cost one sync instead of sixteen.
// Every read of a session sees its noted touch at once. What a power cut
// can lose is the last second of activity: a session then looks unused a
// second longer, never ends early and never comes back after a logout.

const (
	touchFlushEvery = time.Second
	// touchFlushAt starts a flush before its time, so a burst cannot pile
	// up more than a few hundred kB of touches.
	touchFlushAt = 1024
	// maxPendingTouches bounds the memory of touches that a failing disk
	// keeps from being flushed; past it, a touch is written before
	// TouchSession returns, as it was without the queue.
	maxPendingTouches = 4 * touchFlushAt
)

// touches are the noted touches not yet written (see touchq), and the
// loop that flushes them.
type touches struct {
	*touchq.Queue
	stop    chan struct{}
	done    chan struct{}
	stopped sync.Once
}

func newTouches() *touches {
	return &touches{
		Queue: touchq.New(maxPendingTouches, touchFlushAt),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
}

// loop flushes every touchFlushEvery, or when kicked, until stopped.
func (t *touches) loop(db *DB) {
	defer close(t.done)
	defer db.recoverLoop("activity writer")
	tick := time.NewTicker(touchFlushEvery)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
		case <-t.Kick():
		}
		// A failed flush keeps its touches for the next; a failing disk
		// fills the queue, and then touches are written one by one, where
		// the failure is the caller's to see.
		_ = db.flushTouches()
	}
}

// close stops noting and the loop, and waits for the loop: what waits then
// is all there will be for the last flush. It may run more than once.
func (t *touches) close() {
	t.Close()
	t.stopLoop()
}

// stopLoop stops the loop and waits for it; touches can still be noted.
func (t *touches) stopLoop() {
	t.stopped.Do(func() { close(t.stop) })
	<-t.done
}

// TouchSession records activity; a missing session is not an error. The
// touch is written within a second (see touches), and every read sees it
// at once.
func (db *DB) TouchSession(_ context.Context, h auth.TokenHash, lastSeen, expiresAt time.Time, ip string) error {
	n := touchq.Touch{LastSeen: lastSeen, Expires: expiresAt, IP: ip}
	if db.touches.Note(h, n) {
		return nil
	}
	return db.writeTouches(map[auth.TokenHash]touchq.Touch{h: n})
}

// flushTouches writes every waiting touch in one transaction. A flush
// reads as many pages as a thousand cache misses, so like a scan it gives
// the map back after (see release.go).
func (db *DB) flushTouches() error {
	batch := db.touches.Snapshot()
	if batch == nil {
		return nil
	}
	err := db.writeTouches(batch)
	if err == nil {
		db.touches.Written(batch)
	}
	_ = db.releaseMapped()
	return err
}

// writeTouches writes batch, skipping sessions that have ended meanwhile,
// and forgets their cached copies once committed.
func (db *DB) writeTouches(batch map[auth.TokenHash]touchq.Touch) error {
	hashes := make([]auth.TokenHash, 0, len(batch))
	err := db.update(func(tx *bolt.Tx) error {
		states := tx.Bucket(bucketSessionState)
		for h, n := range batch {
			var s auth.Session
			_, err := sessionState(tx, h, &s)
			if errors.Is(err, auth.ErrSessionNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			n.To(&s)
			state, err := encodeState(&s)
			if err != nil {
				return err
			}
			if err := states.Put(h[:], state); err != nil {
				return err
			}
			hashes = append(hashes, h)
		}
		return nil
	})
	if err == nil {
		db.sessions.forget(hashes...)
	}
	return err
}
