package store

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"vmsauth/auth"
)

// Every transaction of the store goes through view, update or batch, which
// turn what a damaged file does to bbolt into errors. bbolt trusts the file:
// a damaged page makes it panic on an assertion, or read memory past its
// map, which faults and would kill the process. So each transaction runs
// with debug.SetPanicOnFault, which makes such a fault a panic, and recovers
// any panic into an error wrapping ErrDamaged. The first one also marks the
// database failed (Failed, Failure): nothing read from it can be trusted
// any more, and the service stops rather than serve from it.
//
// The writes also keep their outcome, so that Health can say the disk is
// failing (full, say) until a write succeeds again.

// ErrDamaged means the file's pages are inconsistent: a damaged disk, a
// bad copy, or a change by something other than vmsauth.
var ErrDamaged = auth.ErrStoreDamaged

// restoreAdvice ends every message about damage: what the operator does.
const restoreAdvice = "stop vmsauth and restore a backup (vmsauth restore)"

// health is what the store knows of its file's state.
type health struct {
	lastWrite atomic.Pointer[error] // the last write's error; nil after a success
	unchecked atomic.Bool           // Open left the walk of the pages to CheckInBackground

	failOnce sync.Once
	failed   chan struct{} // closed by fail
	failure  error
}

func newHealth() *health { return &health{failed: make(chan struct{})} }

// fail records the first failure and announces it.
func (db *DB) fail(err error) {
	db.health.failOnce.Do(func() {
		db.health.failure = err
		close(db.health.failed)
	})
}

// Failed is closed once the store found the file damaged, or one of its
// background goroutines (activity writer, page releaser) stopped on a
// panic. Failure then says what happened and what to do.
func (db *DB) Failed() <-chan struct{} { return db.health.failed }

// Failure is the first failure, or nil.
func (db *DB) Failure() error {
	select {
	case <-db.health.failed:
		return db.health.failure
	default:
		return nil
	}
}

// Health is nil while the store can be trusted; see auth.Store.
func (db *DB) Health(context.Context) error {
	if err := db.Failure(); err != nil {
		return err
	}
	if db.health.unchecked.Load() {
		return auth.ErrStoreChecking
	}
	if p := db.health.lastWrite.Load(); p != nil {
		return fmt.Errorf("%w: %w", auth.ErrStoreWriteFailed, *p)
	}
	return nil
}

// damaged turns a panic out of bbolt (or out of decoding what it read)
// into an error, and marks the database failed.
func (db *DB) damaged(v any) error {
	err := fmt.Errorf("database %s is %w: reading it failed (%w); %s", db.path, ErrDamaged, auth.Recovered(v), restoreAdvice)
	db.fail(err)
	return err
}

// recoverLoop, deferred in a background goroutine of the store, turns its
// panic into the database's failure, once, instead of a crash.
func (db *DB) recoverLoop(name string) {
	if v := recover(); v != nil {
		db.fail(fmt.Errorf("the store's %s stopped: %w", name, auth.Recovered(v)))
	}
}

// guarded runs op with faults turned into panics, and panics into errors.
func (db *DB) guarded(op func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if v := recover(); v != nil {
			err = db.damaged(v)
		}
	}()
	return op()
}

// view runs fn in a read transaction.
func (db *DB) view(fn func(tx *bolt.Tx) error) error {
	return db.guarded(func() error { return db.bolt.View(fn) })
}

// update runs fn in a write transaction and commits it.
func (db *DB) update(fn func(tx *bolt.Tx) error) error {
	var fnErr error
	err := db.guarded(func() error {
		return db.bolt.Update(func(tx *bolt.Tx) error { fnErr = fn(tx); return fnErr })
	})
	db.wrote(err, fnErr)
	return err
}

// wrote keeps a write's outcome for Health: a commit that failed (fn
// returned nil, and yet the write did not happen) marks the disk failing,
// and any commit that succeeds clears it. An error of fn's own is a refusal
// of the write, not a failure of the disk.
func (db *DB) wrote(err, fnErr error) {
	switch {
	case err == nil:
		db.health.lastWrite.Store(nil)
	case fnErr == nil && !errors.Is(err, ErrDamaged) && !errors.Is(err, berrors.ErrDatabaseNotOpen):
		db.health.lastWrite.Store(&err)
	}
}
