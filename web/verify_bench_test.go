package web_test

import (
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"vmsauth/auth"
	"vmsauth/store"
	"vmsauth/web"
)

// BenchmarkForwardAuthVerify is one /auth/verify with a good token through
// the forward-auth listener's handler, called directly (no sockets), as
// nginx's auth_request asks it: the CPU and allocations vmsauth itself
// spends per check on a cache hit, for -benchmem and -cpuprofile:
//
//	go test -run '^$' -bench ForwardAuthVerify -benchmem ./web/
func BenchmarkForwardAuthVerify(b *testing.B) {
	db, err := store.Open(filepath.Join(b.TempDir(), "vmsauth.db"), store.Options{ReleaseEvery: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	svc, err := auth.New(db, auth.Config{})
	if err != nil {
		b.Fatal(err)
	}
	h, err := web.NewHandlers(svc, web.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	u := &auth.User{
		Login: "bench", Name: "bench", PasswordHash: "x", APIs: []auth.API{auth.APIAdmin},
		Permissions: []string{"cameras.view", "archive-view", "users.manage"}, CreatedAt: now, UpdatedAt: now,
	}
	if err := db.CreateUser(b.Context(), u); err != nil {
		b.Fatal(err)
	}
	token := randomString(32)
	th := auth.HashToken(token)
	// Seen just now: no check in the loop falls due for an activity write.
	s := &auth.Session{ID: th.SessionID(), TokenHash: th, UserID: u.ID, API: auth.APIAdmin,
		CreatedAt: now, LastSeen: now.Add(time.Minute), ExpiresAt: now.Add(auth.DefaultAdminTTL)}
	if err := db.CreateSession(b.Context(), s, auth.CreateOptions{Now: now}); err != nil {
		b.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, "/auth/verify?permission=archive-view", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.RemoteAddr = "@"
	w := &nullWriter{header: http.Header{}}
	h.ForwardAuth.ServeHTTP(w, req)
	if w.status != http.StatusOK || w.header.Get("X-Auth-Login") != "bench" ||
		w.header.Get("X-Auth-Permissions") != "cameras.view,archive-view,users.manage" {
		b.Fatalf("verify: %d %v", w.status, w.header)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		clear(w.header)
		h.ForwardAuth.ServeHTTP(w, req)
	}
	if w.status != http.StatusOK {
		b.Fatalf("verify: %d", w.status)
	}
}

// nullWriter is the cheapest ResponseWriter, so that the benchmark counts
// the handler's allocations, not a recorder's.
type nullWriter struct {
	header http.Header
	status int
}

func (w *nullWriter) Header() http.Header         { return w.header }
func (w *nullWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nullWriter) WriteHeader(status int)      { w.status = status }
