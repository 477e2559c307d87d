// Package storetest is the contract of auth.Store and auth.AuditLog as
// tests: the cases every storage backend must pass, so that a second
// backend proves it behaves as bbolt does, and the one place tests choose
// the backend they run on. It holds no backend and no rule of its own: the
// rules are auth's (auth/sessions.go), and these cases check that a
// backend applies them inside its transactions.
package storetest

import (
	"os"
	"path/filepath"
	"testing"

	"vmsauth/auth"
	"vmsauth/store"
)

// Backend is what a storage backend provides: the store the rules need,
// the audit trail, and Close, which may be called more than once.
type Backend interface {
	auth.Store
	auth.AuditLog
	Close() error
}

// EnvStore names the backend OpenForTest opens: "bbolt", the default, is
// the only one so far.
const EnvStore = "VMSAUTH_TEST_STORE"

// OpenForTest opens an empty backend for t, closed when t ends: a bbolt
// file in t.TempDir() unless EnvStore names another. auth and web tests
// open their store through it, so the same tests run on every backend.
func OpenForTest(t testing.TB) Backend {
	t.Helper()
	switch name := os.Getenv(EnvStore); name {
	case "", "bbolt":
		db, err := store.Open(filepath.Join(t.TempDir(), "vmsauth.db"), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		return db
	default:
		t.Fatalf("%s=%q: no such backend (want bbolt)", EnvStore, name)
		return nil
	}
}

// Run runs every case of the contract, each on a fresh, empty backend that
// open returns (and closes when its t ends).
func Run(t *testing.T, open func(t *testing.T) Backend) {
	st := suite{open: open}
	for _, c := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"Users", st.users},
		{"UpdateUser", st.updateUser},
		{"DeleteUser", st.deleteUser},
		{"CreateSession", st.createSessionCase},
		{"CreateSessionRace", st.createSessionRace},
		{"SessionByHash", st.sessionByHash},
		{"UserSessionsOrder", st.userSessionsOrder},
		{"DeleteSession", st.deleteSession},
		{"TouchSession", st.touchSession},
		{"RotateRefresh", st.rotateRefresh},
		{"Audit", st.audit},
	} {
		t.Run(c.name, c.run)
	}
}

type suite struct {
	open func(t *testing.T) Backend
}
