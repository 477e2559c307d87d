package store_test

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"vmsauth/auth"
	"vmsauth/store"
	"vmsauth/store/storetest"
)

func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.db")
	db, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	alice := storetest.CreateUser(t, db, "alice")
	s := storetest.CreateSession(t, db, storetest.NewSession(t, alice.ID, auth.APIClient, now), auth.CreateOptions{})
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openDB(t, path)
	if got, gotU, err := db.SessionByHash(t.Context(), s.TokenHash); err != nil || !reflect.DeepEqual(got, storetest.Checked(s)) || !reflect.DeepEqual(gotU, alice) {
		t.Fatalf("after reopening: %+v, %+v, %v", got, gotU, err)
	}
	if bob := storetest.CreateUser(t, db, "bob"); bob.ID != 2 {
		t.Fatalf("id after reopening = %d, want 2", bob.ID)
	}
	if db.Path() != path {
		t.Fatalf("Path = %q, want %q", db.Path(), path)
	}
}

func TestReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.db")
	db, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	storetest.CreateUser(t, db, "alice")
	_ = db.Close()

	ro, err := store.Open(path, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if _, err := ro.UserByLogin(t.Context(), "alice"); err != nil {
		t.Fatal(err)
	}
	if err := ro.CreateUser(t.Context(), &auth.User{Login: "bob"}); err == nil {
		t.Fatal("CreateUser on a read-only database succeeded")
	}

	_, err = store.Open(filepath.Join(t.TempDir(), "missing.db"), store.Options{ReadOnly: true})
	storetest.WantErr(t, err, os.ErrNotExist)
}

func TestOpenInitialisesEmptyBolt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.db")
	b, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = b.Close()
	db := openDB(t, path)
	storetest.CreateUser(t, db, "alice")
}

func TestOpenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.db")
	openDB(t, path)
	start := time.Now()
	_, err := store.Open(path, store.Options{Timeout: 100 * time.Millisecond})
	storetest.WantErr(t, err, store.ErrLocked)
	if d := time.Since(start); d > time.Second {
		t.Errorf("Open waited %v", d)
	}
	want := fmt.Sprintf("database %s is in use by another process (is vmsauth serve running?)", path)
	if err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
}

func TestOpenMissingDir(t *testing.T) {
	_, err := store.Open(filepath.Join(t.TempDir(), "no", "auth.db"), store.Options{})
	storetest.WantErr(t, err, os.ErrNotExist)
}

func TestBackupAndCheck(t *testing.T) {
	db := newDB(t)
	alice := storetest.CreateUser(t, db, "alice")
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := db.Backup(f)
	if err != nil || n == 0 {
		t.Fatalf("Backup = %d, %v", n, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	backup := openDB(t, path)
	if err := backup.Check(); err != nil {
		t.Fatal(err)
	}
	if u, err := backup.User(t.Context(), alice.ID); err != nil || u.Login != "alice" {
		t.Fatalf("user in backup = %+v, %v", u, err)
	}
}

// TestMigrateSchema1 opens a file as the first vmsauth wrote it and checks
// the upgrade to the current schema.
func TestMigrateSchema1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v1.db")
	withBolt(t, path, func(tx *bolt.Tx) error {
		for _, name := range []string{"users", "users_by_login", "sessions", "sessions_by_hash", "user_sessions", "refresh", "user_refresh"} {
			if _, err := tx.CreateBucket([]byte(name)); err != nil {
				return err
			}
		}
		meta, err := tx.CreateBucket([]byte("meta"))
		if err != nil {
			return err
		}
		return meta.Put([]byte("schema"), binary.BigEndian.AppendUint64(nil, 1))
	})

	if _, err := store.Open(path, store.Options{ReadOnly: true}); err == nil || !strings.Contains(err.Error(), "upgrading") {
		t.Fatalf("read-only open of an old schema: %v", err)
	}
	db := openDB(t, path)
	if err := db.AppendAudit(t.Context(), []auth.AuditEntry{{Time: now, Login: "x"}}, 10, time.Hour, now); err != nil {
		t.Fatalf("audit after migration: %v", err)
	}
	db.Close()

	withBolt(t, path, func(tx *bolt.Tx) error {
		if v := binary.BigEndian.Uint64(tx.Bucket([]byte("meta")).Get([]byte("schema"))); v != 3 {
			t.Errorf("schema after open = %d, want 3", v)
		}
		return nil
	})
}

// TestMigrateSchema2 opens a file holding a session as schema 2 stored it
// (JSON under a random public id, with a hash index) and checks that the
// upgrade keeps the session: its token, its user, its device.
func TestMigrateSchema2(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v2.db")
	alice := &auth.User{ID: 1, Login: "alice", APIs: []auth.API{auth.APIClient}, CreatedAt: now, UpdatedAt: now}
	s := storetest.NewSession(t, alice.ID, auth.APIClient, now)
	s.ID = strings.Repeat("ab", 40) // schema 2's ids were random
	withBolt(t, path, func(tx *bolt.Tx) error {
		put := func(bucket string, k, v []byte) error {
			bk, err := tx.CreateBucketIfNotExists([]byte(bucket))
			if err != nil {
				return err
			}
			return bk.Put(k, v)
		}
		uid := binary.BigEndian.AppendUint64(nil, 1)
		user, _ := json.Marshal(alice)
		session, _ := json.Marshal(s)
		return errors.Join(
			put("meta", []byte("schema"), binary.BigEndian.AppendUint64(nil, 2)),
			put("users", uid, user),
			put("users_by_login", []byte("alice"), uid),
			put("sessions", []byte(s.ID), session),
			put("sessions_by_hash", s.TokenHash[:], []byte(s.ID)),
			put("user_sessions", append(uid, s.ID...), nil),
			put("refresh", []byte{0}, nil), put("user_refresh", []byte{0}, nil), put("audit", []byte{0}, nil),
		)
	})

	db := openDB(t, path)
	want := *s
	want.ID = s.TokenHash.SessionID()
	got, u, err := db.SessionByHash(t.Context(), s.TokenHash)
	if err != nil || !reflect.DeepEqual(got, storetest.Checked(&want)) || u.Login != "alice" {
		t.Fatalf("token check after migration = %+v, %+v, %v", got, u, err)
	}
	if all, err := db.UserSessions(t.Context(), alice.ID); err != nil || !reflect.DeepEqual(all, []*auth.Session{&want}) {
		t.Fatalf("sessions after migration = %+v, %v, want %+v", all, err, want)
	}
	if err := db.DeleteSession(t.Context(), want.ID); err != nil {
		t.Fatalf("ending the migrated session by its new id: %v", err)
	}
	if _, _, err := db.SessionByHash(t.Context(), s.TokenHash); !errors.Is(err, auth.ErrSessionNotFound) {
		t.Fatalf("after ending it: %v", err)
	}
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
	db.Close()

	withBolt(t, path, func(tx *bolt.Tx) error {
		for _, name := range []string{"sessions", "sessions_by_hash"} {
			if tx.Bucket([]byte(name)) != nil {
				t.Errorf("schema 2 bucket %s is left", name)
			}
		}
		return nil
	})
}

func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v9.db")
	db := openDB(t, path)
	db.Close()
	withBolt(t, path, func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("schema"), binary.BigEndian.AppendUint64(nil, 9))
	})
	if _, err := store.Open(path, store.Options{}); err == nil || !strings.Contains(err.Error(), "newer vmsauth") {
		t.Fatalf("newer schema: %v", err)
	}
}
