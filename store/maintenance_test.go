package store_test

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"vmsauth/auth"
	"vmsauth/store"
)

func TestSweep(t *testing.T) {
	db := newDB(t)
	u := createUser(t, db, "alice")
	const keep = 7 * 24 * time.Hour

	// Sessions expire an hour after creation (newSession).
	old := createSession(t, db, newSession(t, u.ID, auth.APIAdmin, now.Add(-keep-2*time.Hour)), auth.CreateOptions{Now: now})
	recent := createSession(t, db, newSession(t, u.ID, auth.APIAdmin, now.Add(-keep)), auth.CreateOptions{Now: now})
	live := createSession(t, db, newSession(t, u.ID, auth.APIClient, now), auth.CreateOptions{Now: now})
	_, usedRefresh := newFamily(t, db, u.ID) // expires now+24h
	if err := db.RotateRefresh(t.Context(), usedRefresh.Hash, newSession(t, 0, auth.APIIntegration, now),
		&auth.Refresh{Hash: randomHash(t), CreatedAt: now, ExpiresAt: now.Add(48 * time.Hour)}); err != nil {
		t.Fatal(err)
	}

	n, err := db.Sweep(now, keep)
	if err != nil || n != 1 {
		t.Fatalf("first sweep removed %d, %v; want the one old session", n, err)
	}
	if _, err := db.Session(t.Context(), old.ID); !errors.Is(err, auth.ErrSessionNotFound) {
		t.Fatalf("old session: %v", err)
	}
	if _, _, err := db.SessionByHash(t.Context(), old.TokenHash); !errors.Is(err, auth.ErrSessionNotFound) {
		t.Fatal("hash index of a swept session remains")
	}
	for _, s := range []*auth.Session{recent, live} {
		if _, err := db.Session(t.Context(), s.ID); err != nil {
			t.Fatalf("kept session %s: %v", s.ID, err)
		}
	}
	// A used refresh token stays until its own expiry: reuse must still
	// be detected.
	if r, err := db.Refresh(t.Context(), usedRefresh.Hash); err != nil || !r.Used {
		t.Fatalf("used refresh token: %+v %v", r, err)
	}

	n, err = db.Sweep(now.Add(60*time.Hour), keep)
	if err != nil || n != 3 {
		t.Fatalf("second sweep removed %d, %v; want the recent session and both refresh tokens", n, err)
	}
	if _, err := db.Refresh(t.Context(), usedRefresh.Hash); !errors.Is(err, auth.ErrTokenInvalid) {
		t.Fatalf("expired refresh token: %v", err)
	}
	if st, err := db.Stats(); err != nil || st.Users != 1 {
		t.Fatalf("stats %+v %v", st, err)
	}
}

func TestAudit(t *testing.T) {
	db := newDB(t)
	add := func(at time.Time, login string, max int) {
		t.Helper()
		e := auth.AuditEntry{Time: at, IP: "192.0.2.1", Login: login, API: auth.APIClient, Result: "failed", Reason: "credentials"}
		if err := db.AppendAudit(t.Context(), []auth.AuditEntry{e}, max, 30*24*time.Hour, at); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		add(now.Add(time.Duration(i)*time.Minute), fmt.Sprintf("user%d", i%4), 10)
	}
	all, err := db.Audit(t.Context(), auth.AuditFilter{})
	if err != nil || len(all) != 10 {
		t.Fatalf("audit holds %d entries, %v; want its bound of 10", len(all), err)
	}
	if !all[0].Time.Equal(now.Add(19*time.Minute)) || !all[9].Time.Equal(now.Add(10*time.Minute)) {
		t.Fatalf("want the newest 10, newest first; got %s .. %s", all[0].Time, all[9].Time)
	}
	byLogin, _ := db.Audit(t.Context(), auth.AuditFilter{Login: "USER1"})
	if len(byLogin) != 2 || byLogin[0].Login != "user1" {
		t.Fatalf("by login: %+v", byLogin)
	}
	since, _ := db.Audit(t.Context(), auth.AuditFilter{Since: now.Add(17 * time.Minute)})
	if len(since) != 3 {
		t.Fatalf("since: %d entries", len(since))
	}
	limited, _ := db.Audit(t.Context(), auth.AuditFilter{Limit: 4})
	if len(limited) != 4 {
		t.Fatalf("limit: %d entries", len(limited))
	}
	// Age bound: a month later one new entry pushes all old ones out.
	add(now.Add(31*24*time.Hour), "late", 10)
	if all, _ := db.Audit(t.Context(), auth.AuditFilter{}); len(all) != 1 || all[0].Login != "late" {
		t.Fatalf("after a month: %+v", all)
	}
}

// TestMigrateSchema1 opens a file as the first vmsauth wrote it and checks
// the upgrade to the current schema.
func TestMigrateSchema1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v1.db")
	b, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = b.Update(func(tx *bolt.Tx) error {
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
	if err != nil {
		t.Fatal(err)
	}
	b.Close()

	if _, err := store.Open(path, store.Options{ReadOnly: true}); err == nil || !strings.Contains(err.Error(), "upgrading") {
		t.Fatalf("read-only open of an old schema: %v", err)
	}
	db := openDB(t, path)
	if err := db.AppendAudit(t.Context(), []auth.AuditEntry{{Time: now, Login: "x"}}, 10, time.Hour, now); err != nil {
		t.Fatalf("audit after migration: %v", err)
	}
	db.Close()

	b, err = bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_ = b.View(func(tx *bolt.Tx) error {
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
	s := newSession(t, alice.ID, auth.APIClient, now)
	s.ID = strings.Repeat("ab", 40) // schema 2's ids were random
	b, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = b.Update(func(tx *bolt.Tx) error {
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
	if err != nil {
		t.Fatal(err)
	}
	b.Close()

	db := openDB(t, path)
	want := *s
	want.ID = s.TokenHash.SessionID()
	got, u, err := db.SessionByHash(t.Context(), s.TokenHash)
	if err != nil || !reflect.DeepEqual(got, checked(&want)) || u.Login != "alice" {
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

	b, err = bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_ = b.View(func(tx *bolt.Tx) error {
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
	b, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = b.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("schema"), binary.BigEndian.AppendUint64(nil, 9))
	})
	b.Close()
	if _, err := store.Open(path, store.Options{}); err == nil || !strings.Contains(err.Error(), "newer vmsauth") {
		t.Fatalf("newer schema: %v", err)
	}
}
