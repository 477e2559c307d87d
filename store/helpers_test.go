package store_test

import (
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"vmsauth/store"
	"vmsauth/store/storetest"
)

// now is the suite's fixed clock, which the store's own tests share.
var now = storetest.Now

func openDB(t *testing.T, path string) *store.DB {
	t.Helper()
	db, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func newDB(t *testing.T) *store.DB {
	t.Helper()
	return openDB(t, filepath.Join(t.TempDir(), "auth.db"))
}

// withBolt reads or changes a database behind the store's back, as an
// older vmsauth or damage would, in a consistent bbolt transaction: only
// the store's own checks can tell.
func withBolt(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	b, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Update(fn); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}
