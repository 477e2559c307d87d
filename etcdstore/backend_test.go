package etcdstore_test

import (
	"errors"
	"testing"
	"time"

	"vmsauth/auth"
	"vmsauth/etcd/etcdtest"
	"vmsauth/store/storetest"
)

// The extras serve needs (cli.Backend), with the bbolt store's rules: the
// same case as store's TestSweep, plus HeldUsers and LiveSessions.
func TestBackendExtras(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	db := open(t, c)
	now := storetest.Now
	if held, err := db.HeldUsers(); err != nil || held {
		t.Fatalf("HeldUsers on an empty prefix: %v %v", held, err)
	}
	u := storetest.CreateUser(t, db, "alice")
	if held, err := db.HeldUsers(); err != nil || !held {
		t.Fatalf("HeldUsers with a user: %v %v", held, err)
	}
	const keep = 7 * 24 * time.Hour

	old := storetest.CreateSession(t, db, storetest.NewSession(t, u.ID, auth.APIAdmin, now.Add(-keep-2*time.Hour)), auth.CreateOptions{Now: now})
	recent := storetest.CreateSession(t, db, storetest.NewSession(t, u.ID, auth.APIAdmin, now.Add(-keep)), auth.CreateOptions{Now: now})
	live := storetest.CreateSession(t, db, storetest.NewSession(t, u.ID, auth.APIClient, now), auth.CreateOptions{Now: now})
	_, usedRefresh := storetest.NewFamily(t, db, u.ID)
	if err := db.RotateRefresh(t.Context(), usedRefresh.Hash, storetest.NewSession(t, 0, auth.APIIntegration, now),
		&auth.Refresh{Hash: storetest.RandomHash(t), CreatedAt: now, ExpiresAt: now.Add(48 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	counts, err := db.LiveSessions(now)
	if err != nil || counts[auth.APIClient] != 1 || counts[auth.APIAdmin] != 0 || counts[auth.APIIntegration] != 2 {
		t.Fatalf("LiveSessions: %v %v", counts, err)
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
	if held, err := db.HeldUsers(); err != nil || !held {
		t.Fatalf("HeldUsers after the sweep: %v %v", held, err)
	}
}
