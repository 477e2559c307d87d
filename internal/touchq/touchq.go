// Package touchq is the queue of session activity a store writes behind:
// the touches (last use, extended expiry, latest address) that token checks
// noted and no store has written yet. Both storage backends (store on
// bbolt, etcdstore on etcd) keep one and flush it their own way; the queue
// owns what they share: merging touches, bounding them, and letting every
// read see a waiting touch at once.
//
// A read of a session takes the stored state and puts the waiting touch on
// top. A flush can write a touch and drop it from the queue while a read is
// between the two, which would then see neither; so reads note the
// Generation first and read again when Apply says a flush was written
// since (once a second at most).
package touchq

import (
	"sync"
	"time"

	"vmsauth/auth"
)

// Touch is what a check noted of a session's use.
type Touch struct {
	LastSeen, Expires time.Time
	IP                string // "" keeps the session's address
}

// To puts the touch on s.
func (n Touch) To(s *auth.Session) {
	s.LastSeen, s.ExpiresAt = n.LastSeen, n.Expires
	if n.IP != "" {
		s.IP = n.IP
	}
}

// Queue holds the noted touches not yet written, by token hash. It is safe
// for concurrent use.
type Queue struct {
	mu      sync.RWMutex
	gen     uint64
	pending map[auth.TokenHash]Touch
	closed  bool // no more noting: the store takes, or took, the last flush
	max     int
	flushAt int
	kick    chan struct{}
}

// New returns an empty queue of at most max touches, which asks for a
// flush before its time (Kick) once flushAt wait (0: never).
func New(max, flushAt int) *Queue {
	return &Queue{pending: make(map[auth.TokenHash]Touch), max: max, flushAt: flushAt, kick: make(chan struct{}, 1)}
}

// Note adds a touch of h, merged with one already waiting. It returns false
// when the queue is full and h is not in it, or closed: the caller writes
// it itself.
func (q *Queue) Note(h auth.TokenHash, n Touch) bool {
	q.mu.Lock()
	old, waiting := q.pending[h]
	if q.closed || !waiting && len(q.pending) >= q.max {
		q.mu.Unlock()
		return false
	}
	if n.IP == "" {
		n.IP = old.IP
	}
	q.pending[h] = n
	full := q.flushAt > 0 && len(q.pending) >= q.flushAt
	q.mu.Unlock()
	if full {
		select {
		case q.kick <- struct{}{}:
		default:
		}
	}
	return true
}

// Kick receives when flushAt touches wait.
func (q *Queue) Kick() <-chan struct{} { return q.kick }

// Generation is what a read must note before it reads the stored state.
func (q *Queue) Generation() uint64 {
	q.mu.RLock()
	defer q.mu.RUnlock()
	return q.gen
}

// Apply gives each of ss the touch waiting for it, if any, and reports
// whether that is the whole truth: false if a flush has been written since
// gen, and the read must be made again.
func (q *Queue) Apply(gen uint64, ss ...*auth.Session) bool {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.gen != gen {
		return false
	}
	q.applyLocked(ss)
	return true
}

// ApplyInWrite is Apply for reads that no flush can commit during (a bbolt
// write transaction, flushes being write transactions too), so a touch a
// flush has dropped is in what they read.
func (q *Queue) ApplyInWrite(ss ...*auth.Session) {
	q.mu.RLock()
	defer q.mu.RUnlock()
	q.applyLocked(ss)
}

func (q *Queue) applyLocked(ss []*auth.Session) {
	for _, s := range ss {
		if n, ok := q.pending[s.TokenHash]; ok {
			n.To(s)
		}
	}
}

// Snapshot copies the waiting touches, leaving them waiting (and so seen
// by reads) until Written; nil when none wait.
func (q *Queue) Snapshot() map[auth.TokenHash]Touch {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if len(q.pending) == 0 {
		return nil
	}
	batch := make(map[auth.TokenHash]Touch, len(q.pending))
	for h, n := range q.pending {
		batch[h] = n
	}
	return batch
}

// Written drops the touches of batch that have not been noted again since
// it was taken, and starts a new generation.
func (q *Queue) Written(batch map[auth.TokenHash]Touch) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.gen++
	for h, n := range batch {
		if q.pending[h] == n {
			delete(q.pending, h)
		}
	}
}

// Close stops noting: what waits then is all there will be for the last
// flush.
func (q *Queue) Close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
}

// Len is how many touches wait.
func (q *Queue) Len() int {
	q.mu.RLock()
	defer q.mu.RUnlock()
	return len(q.pending)
}
