package store_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"vmsauth/auth"
	"vmsauth/store"
)

// withBolt changes a database behind the store's back, as damage would,
// in a consistent bbolt transaction: only the store's own checks can tell.
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

// TestOpenRefusesMissingBuckets: a vmsauth file lacking a bucket of its
// schema is damaged. Open, writable or not, refuses it naming the bucket
// and writes nothing: it must never make the bucket afresh, which gave a
// file whose users were lost a new admin and reused user ids.
func TestOpenRefusesMissingBuckets(t *testing.T) {
	base := filepath.Join(t.TempDir(), "base.db")
	db := openDB(t, base)
	alice := createUser(t, db, "alice")
	if err := db.CreateSession(newSession(t, alice.ID, auth.APIClient, now), auth.CreateOptions{Now: now}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	good, err := os.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}
	damage := map[string]func(tx *bolt.Tx) error{
		"WithoutIndex": func(tx *bolt.Tx) error {
			return tx.Bucket([]byte("users_by_login")).Delete([]byte("alice"))
		},
		"MetaWithoutSchema": func(tx *bolt.Tx) error { return tx.Bucket([]byte("meta")).Delete([]byte("schema")) },
	}
	for _, name := range []string{"meta", "users", "users_by_login", "session_state", "session_device",
		"session_ids", "user_sessions", "refresh", "user_refresh", "audit"} {
		damage["Without_"+name] = func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte(name)) }
	}
	for name, fn := range damage {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "auth.db")
			if err := os.WriteFile(path, good, 0o600); err != nil {
				t.Fatal(err)
			}
			withBolt(t, path, fn)
			before, _ := os.ReadFile(path)
			for _, ro := range []bool{false, true} {
				db, err := store.Open(path, store.Options{ReadOnly: ro})
				if err == nil {
					db.Close()
					t.Fatalf("Open (read-only %v) accepted the damaged file", ro)
				}
				msg := err.Error()
				switch bucket, _ := strings.CutPrefix(name, "Without_"); {
				case name == "MetaWithoutSchema":
					wantErr(t, err, store.ErrForeign)
				case name == "WithoutIndex":
					wantErr(t, err, store.ErrDamaged)
					if !strings.Contains(msg, "1 users but 0 logins") {
						t.Errorf("error %q should say the indexes disagree", msg)
					}
				default:
					wantErr(t, err, store.ErrDamaged)
					if !strings.Contains(msg, "bucket "+bucket+" is missing") || !strings.Contains(msg, "restore a backup") {
						t.Errorf("error %q should name bucket %s and say to restore a backup", msg, bucket)
					}
				}
				if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
					t.Fatalf("Open (read-only %v) changed the refused file", ro)
				}
			}
		})
	}
}

// TestOpenWritesNothing: opening a sound file at the current schema, for
// reading or writing, and closing it leaves every byte as it was.
func TestOpenWritesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.db")
	db := openDB(t, path)
	createUser(t, db, "alice")
	db.Close()
	before, _ := os.ReadFile(path)
	for _, opts := range []store.Options{{ReadOnly: true}, {}, {CheckLater: true}} {
		db, err := store.Open(path, opts)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Users(); err != nil {
			t.Fatal(err)
		}
		if err := db.Check(); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
			t.Fatalf("Open with %+v and Close changed the file", opts)
		}
	}
}

// TestHeldUsers: a file keeps the fact that it held users after they are
// all deleted, so that serve never makes a new admin on it.
func TestHeldUsers(t *testing.T) {
	db := newDB(t)
	if held, err := db.HeldUsers(); err != nil || held {
		t.Fatalf("new file: held %v, %v", held, err)
	}
	alice := createUser(t, db, "alice")
	if err := db.DeleteUser(alice.ID); err != nil {
		t.Fatal(err)
	}
	if held, err := db.HeldUsers(); err != nil || !held {
		t.Fatalf("after its only user was deleted: held %v, %v", held, err)
	}
}

// TestCheckLater: with the page walk left to CheckInBackground, Health
// says the check is running, writes wait for it, and it clears when the
// walk has passed.
func TestCheckLater(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.db")
	db := openDB(t, path)
	createUser(t, db, "alice")
	db.Close()
	db, err := store.Open(path, store.Options{CheckLater: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Health(); !errors.Is(err, auth.ErrStoreChecking) {
		t.Fatalf("health before the check: %v", err)
	}
	if err := <-db.CheckInBackground(); err != nil {
		t.Fatal(err)
	}
	if err := db.Health(); err != nil {
		t.Fatalf("health after the check: %v", err)
	}
	createUser(t, db, "bob")
}

// TestDamageFoundWhileOpen: damage that appears under an open database
// (a failing disk) makes reads fail with ErrDamaged instead of a panic,
// and marks the database failed, once, for serve to stop.
func TestDamageFoundWhileOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.db")
	db := openDB(t, path)
	createUser(t, db, "alice")
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Zero every page but the two meta pages: bbolt reads the file through
	// a shared map, so it sees this at once.
	st, _ := f.Stat()
	ps := int64(os.Getpagesize())
	if _, err := f.WriteAt(make([]byte, st.Size()-2*ps), 2*ps); err != nil {
		t.Fatal(err)
	}
	f.Close()
	select {
	case <-db.Failed():
		t.Fatal("failed before anything read the damage")
	default:
	}
	_, err = db.UserByLogin("bob")
	wantErr(t, err, store.ErrDamaged)
	select {
	case <-db.Failed():
	case <-time.After(time.Second):
		t.Fatal("the database is not marked failed")
	}
	if err := db.Health(); !errors.Is(err, auth.ErrStoreDamaged) {
		t.Fatalf("health: %v", err)
	}
	if _, err := db.Users(); !errors.Is(err, store.ErrDamaged) {
		t.Fatalf("a second read: %v", err)
	}
}
