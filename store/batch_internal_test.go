package store

import (
	"errors"
	"path/filepath"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// A panic in the commit of a batched write (damage that shows only when
// the pages are written) is the database's failure, returned to every
// write of the batch, and not a crash of the process: the commit runs on
// a goroutine of the writers', under the same guard as every other
// transaction.
func TestBatchCommitPanic(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "vmsauth.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = db.batch(func(tx *bolt.Tx) error {
				if i == 0 {
					tx.OnCommit(func() { panic("a page that does not add up") })
				}
				_, err := tx.CreateBucketIfNotExists([]byte("test"))
				return err
			})
		}()
	}
	wg.Wait()
	if !errors.Is(errs[0], ErrDamaged) {
		t.Errorf("the write whose commit panicked: %v, want ErrDamaged", errs[0])
	}
	select {
	case <-db.Failed():
	default:
		t.Error("the database is not marked failed after a panic in a commit")
	}
}
