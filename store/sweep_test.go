package store_test

import (
	"errors"
	"testing"
	"time"

	"vmsauth/auth"
	"vmsauth/store/storetest"
)

func TestSweep(t *testing.T) {
	db := newDB(t)
	u := storetest.CreateUser(t, db, "alice")
	const keep = 7 * 24 * time.Hour

	// Sessions expire an hour after creation (newSession).
	old := storetest.CreateSession(t, db, storetest.NewSession(t, u.ID, auth.APIAdmin, now.Add(-keep-2*time.Hour)), auth.CreateOptions{Now: now})
	recent := storetest.CreateSession(t, db, storetest.NewSession(t, u.ID, auth.APIAdmin, now.Add(-keep)), auth.CreateOptions{Now: now})
	live := storetest.CreateSession(t, db, storetest.NewSession(t, u.ID, auth.APIClient, now), auth.CreateOptions{Now: now})
	_, usedRefresh := storetest.NewFamily(t, db, u.ID) // expires now+24h
	if err := db.RotateRefresh(t.Context(), usedRefresh.Hash, storetest.NewSession(t, 0, auth.APIIntegration, now),
		&auth.Refresh{Hash: storetest.RandomHash(t), CreatedAt: now, ExpiresAt: now.Add(48 * time.Hour)}); err != nil {
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
