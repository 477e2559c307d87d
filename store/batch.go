package store

import (
	"errors"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Concurrent logins share commits, and so fsyncs, rather than queueing
// for one each: batch groups the writes that arrive together into one
// transaction, as bbolt's own DB.Batch does. Ours runs the transaction on
// the goroutine of the group's first writer, inside guarded, where
// bbolt's runs it on a goroutine of its own: a panic there (damage that
// shows only when the pages are written) could not be recovered and
// killed the process.
//
// bbolt's default waits 10 ms for company, which a lone login would pay
// in full. 1 ms costs it little, and a busy moment still fills groups:
// logins that come while one commits (fsync) queue up for the next. A
// group starts at once when it holds as many writes as a flood brings at
// a time.
const (
	batchDelay = time.Millisecond
	batchMax   = 64
)

// batcher holds the group still taking writes.
type batcher struct {
	mu  sync.Mutex
	cur *batchGroup
}

// batchGroup is the writes of one transaction. calls is appended to only
// while the group is cur, under the batcher's lock; the leader runs it
// after taking it off, and closes done when every call has its result.
type batchGroup struct {
	calls []batchCall
	full  chan struct{} // closed when the group reached batchMax
	done  chan struct{}
}

type batchCall struct {
	fn  func(tx *bolt.Tx) error
	err error
}

// errSolo marks a call whose function failed inside a group: the group
// runs again without it, and it runs alone, so that its failure rolls
// back only its own writes.
var errSolo = errors.New("store: run alone")

// batch runs fn in a write transaction shared with the writes that arrive
// together, and returns fn's error or the commit's. fn may run more than
// once (again alone, when another write of its group failed), so it
// changes nothing but tx.
func (db *DB) batch(fn func(tx *bolt.Tx) error) error {
	b := &db.batcher
	b.mu.Lock()
	g := b.cur
	leader := g == nil
	if leader {
		g = &batchGroup{full: make(chan struct{}), done: make(chan struct{})}
		b.cur = g
	}
	i := len(g.calls)
	g.calls = append(g.calls, batchCall{fn: fn})
	if len(g.calls) == batchMax {
		b.cur = nil
		close(g.full)
	}
	b.mu.Unlock()

	if !leader {
		<-g.done
		return g.calls[i].err
	}
	t := time.NewTimer(batchDelay)
	select {
	case <-g.full:
	case <-t.C:
	}
	t.Stop()
	b.mu.Lock()
	if b.cur == g {
		b.cur = nil
	}
	b.mu.Unlock()
	db.runGroup(g.calls)
	close(g.done)
	return g.calls[0].err
}

// runGroup commits calls in one transaction, each function guarded. When
// one fails the transaction rolls back, and runs again without it; the
// failed one then runs alone for its own result.
func (db *DB) runGroup(calls []batchCall) {
	pending := make([]*batchCall, len(calls))
	for i := range calls {
		pending[i] = &calls[i]
	}
	for len(pending) > 0 {
		failed := -1
		err := db.update(func(tx *bolt.Tx) error {
			for j, c := range pending {
				if err := db.guarded(func() error { return c.fn(tx) }); err != nil {
					failed = j
					return errSolo
				}
			}
			return nil
		})
		if failed < 0 {
			for _, c := range pending {
				c.err = err
			}
			return
		}
		c := pending[failed]
		pending = append(pending[:failed], pending[failed+1:]...)
		c.err = db.update(c.fn)
	}
}
