package etcdstore_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"vmsauth/auth"
	"vmsauth/etcd"
	"vmsauth/etcd/etcdtest"
	"vmsauth/etcdstore"
	"vmsauth/store"
)

// BenchmarkTokenCheck compares a token check answered from a site box's
// cache with the same check on a single box's bbolt store (itself served
// from the bbolt store's cache): the goal is a ratio of at least 0.8.
//
//	go test ./etcdstore/ -run '^$' -bench TokenCheck -benchmem
func BenchmarkTokenCheck(b *testing.B) {
	now := time.Now()
	type checker interface {
		auth.Store
		SessionByHashShared(ctx context.Context, h auth.TokenHash) (*auth.Session, *auth.User, error)
	}
	setup := func(b *testing.B, db checker) auth.TokenHash {
		u := &auth.User{Login: "alice", APIs: []auth.API{auth.APIClient}, CreatedAt: now}
		if err := db.CreateUser(b.Context(), u); err != nil {
			b.Fatal(err)
		}
		var h auth.TokenHash
		rand.Read(h[:])
		s := &auth.Session{ID: h.SessionID(), TokenHash: h, UserID: u.ID, API: auth.APIClient,
			CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(time.Hour)}
		if err := db.CreateSession(b.Context(), s, auth.CreateOptions{Now: now}); err != nil {
			b.Fatal(err)
		}
		return h
	}
	run := func(b *testing.B, db checker, h auth.TokenHash) {
		// The first check fills the cache.
		if _, _, err := db.SessionByHashShared(b.Context(), h); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, _, err := db.SessionByHashShared(b.Context(), h); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("bbolt", func(b *testing.B) {
		db, err := store.Open(filepath.Join(b.TempDir(), "vmsauth.db"), store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		run(b, db, setup(b, db))
	})
	b.Run("etcd-cache-hit", func(b *testing.B) {
		c := etcdtest.Start(b, etcdtest.Options{})
		db, err := etcdstore.Open(etcd.Config{Endpoints: c.Endpoints()}, fmt.Sprintf("/vmsauth-bench/%d/", cases.Add(1)))
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		h := setup(b, db)
		// Wait for the watch, so that the checks below are hits.
		for st := db.WatchState(); !st.Up || st.Cached == 0; st = db.WatchState() {
			if _, _, err := db.SessionByHashShared(b.Context(), h); err != nil {
				b.Fatal(err)
			}
			time.Sleep(time.Millisecond)
		}
		run(b, db, h)
	})
}
