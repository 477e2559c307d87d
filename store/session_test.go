package store_test

import (
	"reflect"
	"testing"

	"vmsauth/auth"
)

// A token check reads only a session's state record: it leaves out the
// device description, which only session lists show (auth.Store allows
// it), and a session list has it.
func TestSessionByHashLeavesOutDevice(t *testing.T) {
	db := newDB(t)
	alice := createUser(t, db, "alice")
	s := createSession(t, db, newSession(t, alice.ID, auth.APIClient, now), auth.CreateOptions{})
	if got, _, err := db.SessionByHash(t.Context(), s.TokenHash); err != nil || !reflect.DeepEqual(got, checked(s)) {
		t.Fatalf("SessionByHash = %+v, %v, want %+v", got, err, checked(s))
	}
	if got, err := db.UserSessions(t.Context(), alice.ID); err != nil || len(got) != 1 || !reflect.DeepEqual(got[0], s) {
		t.Fatalf("UserSessions = %+v, %v, want %+v", got, err, s)
	}
}
