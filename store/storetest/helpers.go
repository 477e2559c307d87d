package storetest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"reflect"
	"testing"
	"time"

	"vmsauth/auth"
)

// Now is the fixed clock of every case.
var Now = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// CreateUser stores a user with the login, the client and integration APIs
// and one permission, created at Now.
func CreateUser(t *testing.T, db Backend, login string) *auth.User {
	t.Helper()
	u := &auth.User{
		Login:       login,
		Name:        "Name of " + login,
		APIs:        []auth.API{auth.APIClient, auth.APIIntegration},
		Permissions: []string{"cameras.view"},
		CreatedAt:   Now,
		UpdatedAt:   Now,
	}
	if err := db.CreateUser(t.Context(), u); err != nil {
		t.Fatalf("CreateUser(%q): %v", login, err)
	}
	return u
}

func randomID(t *testing.T) string {
	t.Helper()
	h := RandomHash(t)
	return hex.EncodeToString(h[:8])
}

// RandomHash is a fresh random token hash.
func RandomHash(t *testing.T) auth.TokenHash {
	t.Helper()
	var h auth.TokenHash
	if _, err := rand.Read(h[:]); err != nil {
		t.Fatal(err)
	}
	return h
}

// NewSession is a session of the user created at created and valid for an
// hour after it.
func NewSession(t *testing.T, userID int64, api auth.API, created time.Time) *auth.Session {
	t.Helper()
	h := RandomHash(t)
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

// Checked is s as a token check may return it: without the device, which
// only session lists show.
func Checked(s *auth.Session) *auth.Session {
	c := *s
	c.ClientMeta = auth.ClientMeta{IP: s.IP}
	return &c
}

// CreateSession stores s with the checks of opt, failing t on an error.
func CreateSession(t *testing.T, db Backend, s *auth.Session, opt auth.CreateOptions) *auth.Session {
	t.Helper()
	if err := db.CreateSession(t.Context(), s, opt); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	return s
}

// NewFamily starts an integration refresh chain of the user: a session
// with its refresh token, valid for a day.
func NewFamily(t *testing.T, db Backend, userID int64) (*auth.Session, *auth.Refresh) {
	t.Helper()
	s := NewSession(t, userID, auth.APIIntegration, Now)
	s.Family = randomID(t)
	r := &auth.Refresh{Hash: RandomHash(t), UserID: userID, Family: s.Family, CreatedAt: Now, ExpiresAt: Now.Add(24 * time.Hour)}
	CreateSession(t, db, s, auth.CreateOptions{Now: Now, Refresh: r})
	return s, r
}

func sessionIDs(t *testing.T, db Backend, userID int64) []string {
	t.Helper()
	sessions, err := db.UserSessions(t.Context(), userID)
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{}
	for _, s := range sessions {
		ids = append(ids, s.ID)
	}
	return ids
}

func ids(sessions ...*auth.Session) []string {
	ids := []string{}
	for _, s := range sessions {
		ids = append(ids, s.ID)
	}
	return ids
}

func wantSessions(t *testing.T, db Backend, userID int64, want ...*auth.Session) {
	t.Helper()
	if got := sessionIDs(t, db, userID); !reflect.DeepEqual(got, ids(want...)) {
		t.Fatalf("sessions of user %d = %v, want %v", userID, got, ids(want...))
	}
}

// WantErr fails t unless err is want (errors.Is).
func WantErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want %v", err, want)
	}
}
