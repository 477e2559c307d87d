package store_test

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"vmsauth/auth"
	"vmsauth/store"
)

// now is the fixed clock of every test.
var now = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

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

func createUser(t *testing.T, db *store.DB, login string) *auth.User {
	t.Helper()
	u := &auth.User{
		Login:       login,
		Name:        "Name of " + login,
		APIs:        []auth.API{auth.APIClient, auth.APIIntegration},
		Permissions: []string{"cameras.view"},
		CreatedAt:   now,
		UpdatedAt:   now,
	}
	if err := db.CreateUser(t.Context(), u); err != nil {
		t.Fatalf("CreateUser(%q): %v", login, err)
	}
	return u
}

func randomID(t *testing.T) string {
	t.Helper()
	h := randomHash(t)
	return hex.EncodeToString(h[:8])
}

func randomHash(t *testing.T) auth.TokenHash {
	t.Helper()
	var h auth.TokenHash
	if _, err := rand.Read(h[:]); err != nil {
		t.Fatal(err)
	}
	return h
}

// newSession is a session of the user created at created and valid for an
// hour after it.
func newSession(t *testing.T, userID int64, api auth.API, created time.Time) *auth.Session {
	t.Helper()
	h := randomHash(t)
	return &auth.Session{
		ID:         h.SessionID(),
		TokenHash:  h,
		UserID:     userID,
		API:        api,
		CreatedAt:  created,
		LastSeen:   created,
		ExpiresAt:  created.Add(time.Hour),
		ClientMeta: auth.ClientMeta{IP: "192.0.2.1", UserAgent: "test", Client: "web"},
	}
}

// checked is s as a token check returns it: without the device, which only
// session lists show.
func checked(s *auth.Session) *auth.Session {
	c := *s
	c.ClientMeta = auth.ClientMeta{IP: s.IP}
	return &c
}

func createSession(t *testing.T, db *store.DB, s *auth.Session, opt auth.CreateOptions) *auth.Session {
	t.Helper()
	if err := db.CreateSession(t.Context(), s, opt); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	return s
}

// newFamily starts an integration refresh chain: a session with its
// refresh token.
func newFamily(t *testing.T, db *store.DB, userID int64) (*auth.Session, *auth.Refresh) {
	t.Helper()
	s := newSession(t, userID, auth.APIIntegration, now)
	s.Family = randomID(t)
	r := &auth.Refresh{Hash: randomHash(t), UserID: userID, Family: s.Family, CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)}
	createSession(t, db, s, auth.CreateOptions{Now: now, Refresh: r})
	return s, r
}

func wantErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want %v", err, want)
	}
}
