package etcdstore_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"vmsauth/auth"
	"vmsauth/etcd"
	"vmsauth/etcd/etcdtest"
	"vmsauth/etcdstore"
	"vmsauth/store/storetest"
)

// loseAnswers is a proxy in front of one etcd member that, while lose is
// above zero, passes a writing Txn on to etcd and then answers 502 instead
// of etcd's answer: the write is applied and the client cannot know it.
type loseAnswers struct {
	target string
	lose   atomic.Int32
}

func (p *loseAnswers) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	resp, err := http.Post(p.target+r.URL.Path, "application/json", bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	writes := bytes.Contains(body, []byte("request_put")) || bytes.Contains(body, []byte("request_delete_range"))
	if r.URL.Path == "/v3/kv/txn" && writes && p.lose.Add(-1) >= 0 {
		http.Error(w, "the proxy lost etcd's answer", http.StatusBadGateway)
		return
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(answer)
}

// TestLostAnswer: a write whose answer is lost after etcd applied it is
// tried again, finds itself done and reports success, not the failure its
// second run would meet (a login taken by itself, a user already gone, a
// refresh token already spent).
func TestLostAnswer(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	p := &loseAnswers{target: c.Endpoints()[0]}
	srv := httptest.NewServer(p)
	defer srv.Close()
	db, err := etcdstore.Open(etcd.Config{Endpoints: []string{srv.URL}, Timeout: 5 * time.Second},
		fmt.Sprintf("/vmsauth-test/lost-%d/", cases.Add(1)))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := storetest.Now

	p.lose.Store(1)
	alice := storetest.CreateUser(t, db, "alice")
	if u, err := db.UserByLogin(t.Context(), "alice"); err != nil || u.ID != alice.ID {
		t.Fatalf("UserByLogin = %+v, %v", u, err)
	}

	s := storetest.NewSession(t, alice.ID, auth.APIClient, now)
	p.lose.Store(1)
	storetest.CreateSession(t, db, s, auth.CreateOptions{Now: now, Limit: 1})
	if got, err := db.UserSessions(t.Context(), alice.ID); err != nil || len(got) != 1 {
		t.Fatalf("UserSessions = %v, %v; want the one session", got, err)
	}

	p.lose.Store(1)
	if err := db.DeleteSession(t.Context(), s.ID); err != nil {
		t.Fatalf("DeleteSession: %v", err)
	}

	s1, r1 := storetest.NewFamily(t, db, alice.ID)
	s2 := storetest.NewSession(t, 0, auth.APIIntegration, now)
	r2 := &auth.Refresh{Hash: storetest.RandomHash(t), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	p.lose.Store(1)
	if err := db.RotateRefresh(t.Context(), r1.Hash, s2, r2); err != nil {
		t.Fatalf("RotateRefresh: %v", err)
	}
	if got, err := db.Refresh(t.Context(), r2.Hash); err != nil || got.Family != s1.Family {
		t.Fatalf("the rotated token = %+v, %v", got, err)
	}

	p.lose.Store(1)
	if err := db.DeleteUser(t.Context(), alice.ID); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	if n, err := db.CountUsers(t.Context()); err != nil || n != 0 {
		t.Fatalf("CountUsers = %d, %v", n, err)
	}
}
