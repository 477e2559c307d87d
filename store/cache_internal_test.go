package store

import (
	"testing"

	"vmsauth/auth"
)

// TestCacheFillAfterForget plays the race a check can lose: it notes the
// generation and reads the file, a write commits and forgets the session,
// and only then does the check fill the cache with what it read. That
// stale copy must not be kept.
func TestCacheFillAfterForget(t *testing.T) {
	var c sessionCache
	s := &auth.Session{TokenHash: auth.TokenHash{1}, UserID: 1, API: auth.APIClient}
	s.ID = s.TokenHash.SessionID()
	state, err := encodeState(s)
	if err != nil {
		t.Fatal(err)
	}
	u := &auth.User{ID: 1}

	gen := c.generation()
	c.forget(s.TokenHash) // the write lands between the read and the fill
	c.fill(gen, s.TokenHash, state, s.ID, u)
	if _, _, ok := c.get(s.TokenHash); ok {
		t.Fatal("a session read before a write was cached after it")
	}

	c.fill(c.generation(), s.TokenHash, state, s.ID, u)
	got, gotU, ok := c.get(s.TokenHash)
	// The cache hands out its user itself (SessionByHash clones it,
	// SessionByHashShared does not) and the id it was filled with.
	if !ok || got.ID != s.ID || got.UserID != 1 || gotU != u {
		t.Fatalf("fill in the current generation: %v %+v; the user must be the cached one", ok, got)
	}

	for i := range maxCachedSessions + 10 {
		c.fill(c.generation(), auth.TokenHash{byte(i), byte(i >> 8), 2}, state, s.ID, u)
	}
	if n := len(c.m); n > maxCachedSessions {
		t.Fatalf("cache holds %d sessions, bound %d", n, maxCachedSessions)
	}
	c.reset()
	if len(c.m) != 0 {
		t.Fatal("reset kept sessions")
	}
}
