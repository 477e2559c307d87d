package store

import (
	"errors"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"vmsauth/auth"
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

// touch is what a check noted of a session's use.
type touch struct {
	lastSeen, expires time.Time
	ip                string // "" keeps the session's address
}

// touches are the noted touches not yet written, by token hash.
//
// A read of a session takes the file's state and puts the waiting touch on
// top. A flush can write a touch and drop it from the queue while a read is
// between the two, which would then see neither; so reads note the
// generation first and read again if a flush has been written since (once
// a second at most).
type touches struct {
	mu      sync.RWMutex
	gen     uint64
	pending map[auth.TokenHash]touch
	closed  bool // no more noting: Close has taken, or is taking, the last flush

	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	stopped sync.Once
}

func newTouches() *touches {
	return &touches{
		pending: make(map[auth.TokenHash]touch),
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
}

// note adds a touch of h, merged with one already waiting. It returns false
// when the queue is full and h is not in it, or closed: the caller writes it
// itself.
func (t *touches) note(h auth.TokenHash, n touch) bool {
	t.mu.Lock()
	old, waiting := t.pending[h]
	if t.closed || !waiting && len(t.pending) >= maxPendingTouches {
		t.mu.Unlock()
		return false
	}
	if n.ip == "" {
		n.ip = old.ip
	}
	t.pending[h] = n
	full := len(t.pending) >= touchFlushAt
	t.mu.Unlock()
	if full {
		select {
		case t.kick <- struct{}{}:
		default:
		}
	}
	return true
}

// generation is what a read must note before it reads the file.
func (t *touches) generation() uint64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.gen
}

// apply gives each of ss the touch waiting for it, if any, and reports
// whether that is the whole truth: false if a flush has been written since
// gen, and the read must be made again.
func (t *touches) apply(gen uint64, ss ...*auth.Session) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.gen != gen {
		return false
	}
	t.applyLocked(ss)
	return true
}

// applyInWrite is apply for reads in a write transaction: flushes are write
// transactions too, so none can commit during it, and a touch a flush has
// dropped is in the file it reads.
func (t *touches) applyInWrite(ss ...*auth.Session) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	t.applyLocked(ss)
}

func (t *touches) applyLocked(ss []*auth.Session) {
	for _, s := range ss {
		if n, ok := t.pending[s.TokenHash]; ok {
			n.to(s)
		}
	}
}

func (n touch) to(s *auth.Session) {
	s.LastSeen, s.ExpiresAt = n.lastSeen, n.expires
	if n.ip != "" {
		s.IP = n.ip
	}
}

// snapshot copies the waiting touches, leaving them waiting (and so seen by
// reads) until written.
func (t *touches) snapshot() map[auth.TokenHash]touch {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if len(t.pending) == 0 {
		return nil
	}
	batch := make(map[auth.TokenHash]touch, len(t.pending))
	for h, n := range t.pending {
		batch[h] = n
	}
	return batch
}

// written drops the touches of batch that have not been noted again since.
func (t *touches) written(batch map[auth.TokenHash]touch) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.gen++
	for h, n := range batch {
		if t.pending[h] == n {
			delete(t.pending, h)
		}
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
		case <-t.kick:
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
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
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
func (db *DB) TouchSession(h auth.TokenHash, lastSeen, expiresAt time.Time, ip string) error {
	n := touch{lastSeen: lastSeen, expires: expiresAt, ip: ip}
	if db.touches.note(h, n) {
		return nil
	}
	return db.writeTouches(map[auth.TokenHash]touch{h: n})
}

// flushTouches writes every waiting touch in one transaction. A flush
// reads as many pages as a thousand cache misses, so like a scan it gives
// the map back after (see release.go).
func (db *DB) flushTouches() error {
	batch := db.touches.snapshot()
	if batch == nil {
		return nil
	}
	err := db.writeTouches(batch)
	if err == nil {
		db.touches.written(batch)
	}
	_ = db.releaseMapped()
	return err
}

// writeTouches writes batch, skipping sessions that have ended meanwhile,
// and forgets their cached copies once committed.
func (db *DB) writeTouches(batch map[auth.TokenHash]touch) error {
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
			n.to(&s)
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
