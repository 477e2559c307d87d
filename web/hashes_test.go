package web_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"vmsauth/auth"
	"vmsauth/internal/testkit"
	"vmsauth/store"
)

// Issue 12, "Passwords and hashes".

// importUser creates alice with a bcrypt hash of "password1" at cost, as
// an import from another system would.
func (e *env) importUser(cost int) *auth.User {
	e.t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte("password1"), cost)
	if err != nil {
		e.t.Fatal(err)
	}
	u, err := e.Svc.CreateUser(context.Background(), auth.Root, auth.NewUser{Login: "alice", PasswordHash: string(h), APIs: allAPIs})
	if err != nil {
		e.t.Fatal(err)
	}
	return u
}

func storedCost(t *testing.T, db *store.DB, id int64) int {
	t.Helper()
	u, err := db.User(id)
	if err != nil {
		t.Fatal(err)
	}
	cost, err := bcrypt.Cost([]byte(u.PasswordHash))
	if err != nil {
		t.Fatal(err)
	}
	return cost
}

var alicePassword = map[string]any{"login": "alice", "password": "password1"}

// A hash of another cost than the configured one (an import, or a hash
// from before a cost change) is replaced after the next good login, so
// that its time no longer tells which logins exist.
func TestRehashAfterLogin(t *testing.T) {
	e := newEnv(t) // configured cost: bcrypt.MinCost
	alice := e.importUser(auth.MinImportCost)
	wrong := map[string]any{"login": "alice", "password": "wrong-password"}
	wantStatus(t, e.do("POST", "/api/v1/token", wrong), http.StatusUnprocessableEntity)
	e.Svc.Wait()
	if got := storedCost(t, e.DB, alice.ID); got != auth.MinImportCost {
		t.Fatalf("a wrong password changed the hash to cost %d", got)
	}
	tok, _ := e.clientLogin("alice")
	e.Svc.Wait()
	if got := storedCost(t, e.DB, alice.ID); got != bcrypt.MinCost {
		t.Fatalf("stored cost %d after a login, want the configured %d", got, bcrypt.MinCost)
	}
	// Rehashing is not a password change: the session stays, and the
	// password still works.
	wantStatus(t, e.do("GET", "/api/v1/users/self", nil, authz(tok)...), http.StatusOK)
	e.clientLogin("alice")
}

// updateHookStore runs a hook, once, just before the next change to a user.
type updateHookStore struct {
	*store.DB
	beforeUpdate atomic.Pointer[func()]
}

func (h *updateHookStore) UpdateUser(id int64, fn func(u *auth.User) ([]auth.API, error)) (*auth.User, error) {
	if f := h.beforeUpdate.Swap(nil); f != nil {
		(*f)()
	}
	return h.DB.UpdateUser(id, fn)
}

// A password set while a rehash hashes wins: the rehash replaces only the
// hash it was started for.
func TestRehashLosesToPasswordChange(t *testing.T) {
	var hooks *updateHookStore
	e := newEnvOver(t, func(db *store.DB) auth.Store { hooks = &updateHookStore{DB: db}; return hooks })
	alice := e.importUser(auth.MinImportCost)
	_, root := e.root()
	var changed response
	var changeErr error
	fn := func() {
		changed, changeErr = e.send("POST", fmt.Sprintf("/api/admin/v1/users/%d/password", alice.ID),
			map[string]any{"password": "new-password1"}, authz(root)...)
	}
	hooks.beforeUpdate.Store(&fn)
	e.clientLogin("alice")
	e.Svc.Wait()
	if changeErr != nil || changed.Status != http.StatusOK {
		t.Fatalf("password change: %d %v", changed.Status, changeErr)
	}
	wantStatus(t, e.do("POST", "/api/v1/token", alicePassword), http.StatusUnprocessableEntity)
	wantStatus(t, e.do("POST", "/api/v1/token", map[string]any{"login": "alice", "password": "new-password1"}), http.StatusOK)
}

// A stored hash of a cost no import may have (an old database, a hand
// edit) is not run: a cost-31 hash would hold a hash worker for days. The
// login fails like a wrong password, and the box logs it once.
func TestStoredHashCostTooHigh(t *testing.T) {
	var log testkit.LogBuffer
	e := newEnv(t, withLog(&log))
	alice := e.importUser(auth.MinImportCost)
	h, _ := bcrypt.GenerateFromPassword([]byte("password1"), bcrypt.MinCost)
	// Cost 16 with a cost-4 digest: verifying it would take seconds, and
	// could never succeed.
	high := strings.Replace(string(h), "$04$", "$16$", 1)
	e.updateUser(alice.ID, func(u *auth.User) { u.PasswordHash = high })
	for range 2 {
		wantInvalid(t, e.do("POST", "/api/v1/token", alicePassword),
			map[string][]string{"login": {"These credentials do not match our records."}})
	}
	if n := strings.Count(log.String(), "stored password hash refused"); n != 1 {
		t.Fatalf("logged the refused hash %d times, want once:\n%s", n, log.String())
	}
	if !strings.Contains(log.String(), "level=ERROR msg=\"stored password hash refused") {
		t.Fatalf("the refused hash is not an ERROR:\n%s", log.String())
	}
}

// Password bounds are bytes, and the messages say so.
func TestPasswordMessagesSayBytes(t *testing.T) {
	e := newEnv(t)
	_, root := e.root()
	tests := []struct {
		name, password, hl, want string
	}{
		{"Short", "short", "en", "The password must be at least 8 bytes long."},
		{"ShortRu", "short", "ru", "Длина поля пароль в байтах должна быть не меньше 8."},
		// 37 characters, 74 bytes: a message in characters would be wrong.
		{"LongCyrillic", strings.Repeat("ж", 37), "en", "The password may not be longer than 72 bytes."},
		{"LongCyrillicRu", strings.Repeat("ж", 37), "ru", "Длина поля пароль в байтах не может превышать 72."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.withT(t).do("POST", "/api/admin/v1/users?hl="+tc.hl,
				map[string]any{"login": "bob", "password": tc.password}, authz(root)...)
			if got := r.JSON(t)["errors"]; !strings.Contains(string(mustJSON(t, got)), tc.want) {
				t.Fatalf("errors = %s, want %q", mustJSON(t, got), tc.want)
			}
		})
	}
}
