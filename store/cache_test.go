package store_test

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"vmsauth/auth"
	"vmsauth/store"
	"vmsauth/store/storetest"
)

// TestCheckCacheFollowsWrites checks a session (which caches it), changes
// it or its user through each write the store has, and checks again: the
// second check must see the change, never the cached copy.
func TestCheckCacheFollowsWrites(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(t *testing.T, db *store.DB, u *auth.User, s *auth.Session)
		// want inspects the second check; err is its error.
		want func(t *testing.T, s *auth.Session, u *auth.User, err error)
	}{
		{"DeleteSession", func(t *testing.T, db *store.DB, _ *auth.User, s *auth.Session) {
			if err := db.DeleteSession(t.Context(), s.ID); err != nil {
				t.Fatal(err)
			}
		}, gone},
		{"TouchSession", func(t *testing.T, db *store.DB, _ *auth.User, s *auth.Session) {
			if err := db.TouchSession(t.Context(), s.TokenHash, now.Add(time.Minute), now.Add(3*time.Hour), "198.51.100.9"); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, s *auth.Session, _ *auth.User, err error) {
			if err != nil || !s.LastSeen.Equal(now.Add(time.Minute)) || !s.ExpiresAt.Equal(now.Add(3*time.Hour)) || s.IP != "198.51.100.9" {
				t.Fatalf("after a touch: %+v, %v", s, err)
			}
		}},
		{"UpdateUser", func(t *testing.T, db *store.DB, u *auth.User, _ *auth.Session) {
			if _, err := db.UpdateUser(t.Context(), u.ID, func(u *auth.User) ([]auth.API, error) { u.Disabled = true; return nil, nil }); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, _ *auth.Session, u *auth.User, err error) {
			if err != nil || !u.Disabled {
				t.Fatalf("after disabling the user: %+v, %v", u, err)
			}
		}},
		{"UpdateUserEndingSessions", func(t *testing.T, db *store.DB, u *auth.User, _ *auth.Session) {
			if _, err := db.UpdateUser(t.Context(), u.ID, func(u *auth.User) ([]auth.API, error) { u.PasswordHash = "new"; return auth.AllAPIs, nil }); err != nil {
				t.Fatal(err)
			}
		}, gone},
		{"DeleteUser", func(t *testing.T, db *store.DB, u *auth.User, _ *auth.Session) {
			if err := db.DeleteUser(t.Context(), u.ID); err != nil {
				t.Fatal(err)
			}
		}, gone},
		{"CreateSessionReplacing", func(t *testing.T, db *store.DB, u *auth.User, s *auth.Session) {
			storetest.CreateSession(t, db, storetest.NewSession(t, u.ID, auth.APIClient, now), auth.CreateOptions{Now: now, Limit: 5, Replace: s.ID})
		}, gone},
		{"CreateSessionDroppingExpired", func(t *testing.T, db *store.DB, u *auth.User, _ *auth.Session) {
			// The first session expired at now+1h; a login two hours later
			// deletes it while counting the limit.
			later := now.Add(2 * time.Hour)
			storetest.CreateSession(t, db, storetest.NewSession(t, u.ID, auth.APIClient, later), auth.CreateOptions{Now: later, Limit: 5})
		}, gone},
		{"Sweep", func(t *testing.T, db *store.DB, _ *auth.User, _ *auth.Session) {
			if n, err := db.Sweep(now.Add(48*time.Hour), time.Hour); err != nil || n != 1 {
				t.Fatalf("sweep removed %d, %v", n, err)
			}
		}, gone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := newDB(t)
			u := storetest.CreateUser(t, db, "alice")
			s := storetest.CreateSession(t, db, storetest.NewSession(t, u.ID, auth.APIClient, now), auth.CreateOptions{Now: now})
			for range 2 { // the second comes from the cache
				if _, _, err := db.SessionByHash(t.Context(), s.TokenHash); err != nil {
					t.Fatal(err)
				}
			}
			tc.write(t, db, u, s)
			got, gotU, err := db.SessionByHash(t.Context(), s.TokenHash)
			tc.want(t, got, gotU, err)
		})
	}

	t.Run("RotateRefreshReused", func(t *testing.T) {
		db := newDB(t)
		u := storetest.CreateUser(t, db, "alice")
		s, r := storetest.NewFamily(t, db, u.ID)
		if _, _, err := db.SessionByHash(t.Context(), s.TokenHash); err != nil {
			t.Fatal(err)
		}
		next := func() error {
			return db.RotateRefresh(t.Context(), r.Hash, storetest.NewSession(t, 0, auth.APIIntegration, now),
				&auth.Refresh{Hash: storetest.RandomHash(t), CreatedAt: now, ExpiresAt: now.Add(time.Hour)})
		}
		if err := next(); err != nil {
			t.Fatal(err)
		}
		if err := next(); !errors.Is(err, auth.ErrRefreshReused) {
			t.Fatalf("second use: %v", err)
		}
		_, _, err := db.SessionByHash(t.Context(), s.TokenHash)
		gone(t, nil, nil, err)
	})
}

func gone(t *testing.T, s *auth.Session, _ *auth.User, err error) {
	t.Helper()
	if !errors.Is(err, auth.ErrSessionNotFound) {
		t.Fatalf("the ended session is still checked: %+v, %v", s, err)
	}
}

// TestCheckCacheLogoutRace runs checks of a token without pause while the
// session is ended: once DeleteSession has returned, no check that starts
// afterwards may find the session, although checks that read the file
// before the deletion go on filling the cache around it.
func TestCheckCacheLogoutRace(t *testing.T) {
	db := newDB(t)
	u := storetest.CreateUser(t, db, "alice")
	for range 50 {
		s := storetest.CreateSession(t, db, storetest.NewSession(t, u.ID, auth.APIClient, now), auth.CreateOptions{Now: now})
		var ended atomic.Bool
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					after := ended.Load()
					_, _, err := db.SessionByHash(t.Context(), s.TokenHash)
					if after && err == nil {
						t.Error("a check that started after the logout found the session")
						return
					}
				}
			})
		}
		time.Sleep(time.Millisecond)
		if err := db.DeleteSession(t.Context(), s.ID); err != nil {
			t.Fatal(err)
		}
		ended.Store(true)
		time.Sleep(time.Millisecond)
		close(stop)
		wg.Wait()
		if t.Failed() {
			return
		}
	}
}

// TestSharedUserIsNeverChanged holds the contract of SessionByHashShared
// (auth.SharedUserStore): checks share one user with the cache, and the
// store never changes a user it has handed out. A write replaces it, so a
// check still reading the old one sees it whole, and the next check sees
// the new one.
func TestSharedUserIsNeverChanged(t *testing.T) {
	db := newDB(t)
	now := time.Now()
	alice := storetest.CreateUser(t, db, "alice")
	s := storetest.CreateSession(t, db, storetest.NewSession(t, alice.ID, auth.APIClient, now), auth.CreateOptions{Now: now})
	_, first, err := db.SessionByHashShared(t.Context(), s.TokenHash)
	if err != nil {
		t.Fatal(err)
	}
	_, again, err := db.SessionByHashShared(t.Context(), s.TokenHash)
	if err != nil || again != first {
		t.Fatalf("a cached check copied its user (%p, %p, %v): checks are to share it", first, again, err)
	}
	if _, copied, _ := db.SessionByHash(t.Context(), s.TokenHash); copied == first || &copied.Permissions[0] == &first.Permissions[0] {
		t.Fatal("SessionByHash handed out the shared user: its callers may change it")
	}
	perms, name := slices.Clone(first.Permissions), first.Name
	if _, err := db.UpdateUser(t.Context(), alice.ID, func(u *auth.User) ([]auth.API, error) {
		u.Name, u.Permissions[0] = "changed", "changed"
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	if first.Name != name || !slices.Equal(first.Permissions, perms) {
		t.Fatalf("a write changed a user a check was holding: %+v", first)
	}
	_, now2, err := db.SessionByHashShared(t.Context(), s.TokenHash)
	if err != nil || now2.Name != "changed" || now2.Permissions[0] != "changed" {
		t.Fatalf("the check after a write: %+v, %v", now2, err)
	}
}
