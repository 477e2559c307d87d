package storetest

import (
	"errors"
	"testing"
	"time"

	"vmsauth/auth"
)

// Upkeep is a Backend with what serve needs of it besides the contract
// (cli.Backend): whether it ever held a user, the sweep, and the count of
// live sessions for /metrics.
type Upkeep interface {
	Backend
	HeldUsers() (bool, error)
	Sweep(now time.Time, keep time.Duration) (int, error)
	LiveSessions(now time.Time) (map[auth.API]int, error)
}

// RunUpkeep runs, on an empty db, the case every backend's upkeep keeps
// with the bbolt store's rules: the sweep deletes the sessions expired for
// longer than keep, and refresh tokens (used or not) past their own
// expiry, and nothing else; HeldUsers and LiveSessions say what is there.
func RunUpkeep(t *testing.T, db Upkeep) {
	now := Now
	if held, err := db.HeldUsers(); err != nil || held {
		t.Fatalf("HeldUsers on an empty store: %v %v", held, err)
	}
	u := CreateUser(t, db, "alice")
	if held, err := db.HeldUsers(); err != nil || !held {
		t.Fatalf("HeldUsers with a user: %v %v", held, err)
	}
	const keep = 7 * 24 * time.Hour

	// Sessions expire an hour after creation (NewSession).
	old := CreateSession(t, db, NewSession(t, u.ID, auth.APIAdmin, now.Add(-keep-2*time.Hour)), auth.CreateOptions{Now: now})
	recent := CreateSession(t, db, NewSession(t, u.ID, auth.APIAdmin, now.Add(-keep)), auth.CreateOptions{Now: now})
	live := CreateSession(t, db, NewSession(t, u.ID, auth.APIClient, now), auth.CreateOptions{Now: now})
	_, usedRefresh := NewFamily(t, db, u.ID) // expires now+24h
	if err := db.RotateRefresh(t.Context(), usedRefresh.Hash, NewSession(t, 0, auth.APIIntegration, now),
		&auth.Refresh{Hash: RandomHash(t), CreatedAt: now, ExpiresAt: now.Add(48 * time.Hour)}); err != nil {
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
	if held, err := db.HeldUsers(); err != nil || !held {
		t.Fatalf("HeldUsers after the sweep: %v %v", held, err)
	}
}
