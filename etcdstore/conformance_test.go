package etcdstore_test

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"vmsauth/auth"
	"vmsauth/etcd"
	"vmsauth/etcd/etcdtest"
	"vmsauth/etcdstore"
	"vmsauth/store/storetest"
)

// cases numbers the sub-prefixes, so that no two stores of one cluster see
// each other's keys.
var cases atomic.Int64

// open is a store on the cluster under a prefix of its own, closed when t
// ends.
func open(t *testing.T, c *etcdtest.Cluster, endpoints ...string) *etcdstore.Store {
	t.Helper()
	if len(endpoints) == 0 {
		endpoints = c.Endpoints()
	}
	s, err := etcdstore.Open(etcd.Config{Endpoints: endpoints}, fmt.Sprintf("/vmsauth-test/%d/", cases.Add(1)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestConformance runs the storage contract on one etcd member: every case
// on a fresh prefix of the one cluster.
func TestConformance(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	storetest.Run(t, func(t *testing.T) storetest.Backend { return open(t, c) })
}

// TestCreateSessionRaceThreeMembers is the site-wide limit: 50 parallel
// logins of one user with a limit of 5, split over two stores (two boxes)
// that talk to different members of a 3-member cluster, store exactly 5.
func TestCreateSessionRaceThreeMembers(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	prefix := fmt.Sprintf("/vmsauth-test/race-%d/", cases.Add(1))
	var boxes []*etcdstore.Store
	for i := range 2 {
		// Each box starts at another member; it may move on to the others.
		eps := append(c.Endpoints()[i:], c.Endpoints()[:i]...)
		s, err := etcdstore.Open(etcd.Config{Endpoints: eps}, prefix)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		boxes = append(boxes, s)
	}
	alice := storetest.CreateUser(t, boxes[0], "alice")
	const limit, logins = 5, 50
	opt := auth.CreateOptions{Now: storetest.Now, Limit: limit}
	errs := make([]error, logins)
	var wg sync.WaitGroup
	for i := range logins {
		s := storetest.NewSession(t, alice.ID, auth.APIClient, storetest.Now)
		wg.Go(func() { errs[i] = boxes[i%2].CreateSession(t.Context(), s, opt) })
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		var limitErr *auth.SessionLimitError
		switch {
		case err == nil:
			ok++
		case !errors.As(err, &limitErr):
			t.Fatalf("CreateSession: %v", err)
		}
	}
	for _, box := range boxes {
		got, err := box.UserSessions(t.Context(), alice.ID)
		if err != nil {
			t.Fatal(err)
		}
		if ok != limit || len(got) != limit {
			t.Fatalf("%d logins succeeded and %d sessions exist, want %d", ok, len(got), limit)
		}
	}
}

// TestClosed: after Close every call fails and Health says so, as with a
// closed bbolt file, so a service that closed its store answers 500s and
// /healthz 503, not stale successes.
func TestClosed(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	db := open(t, c)
	alice := storetest.CreateUser(t, db, "alice")
	if err := db.Health(t.Context()); err != nil {
		t.Fatalf("Health before Close: %v", err)
	}
	db.Close()
	if _, err := db.User(t.Context(), alice.ID); !errors.Is(err, etcdstore.ErrClosed) {
		t.Fatalf("User after Close: %v, want ErrClosed", err)
	}
	if err := db.CreateUser(t.Context(), &auth.User{Login: "bob"}); !errors.Is(err, etcdstore.ErrClosed) {
		t.Fatalf("CreateUser after Close: %v, want ErrClosed", err)
	}
	if err := db.Health(t.Context()); !errors.Is(err, etcdstore.ErrClosed) {
		t.Fatalf("Health after Close: %v, want ErrClosed", err)
	}
}

// TestAuditLargeBatch: a batch beyond etcd's 128 operations per
// transaction (the Auditor keeps up to 10 000 entries while etcd is away)
// is written whole, in chunks, and trimmed to the bound.
func TestAuditLargeBatch(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	db := open(t, c)
	now := storetest.Now
	batch := make([]auth.AuditEntry, 300)
	for i := range batch {
		batch[i] = auth.AuditEntry{Time: now.Add(time.Duration(i) * time.Second), IP: "192.0.2.1",
			Login: fmt.Sprintf("user%d", i), API: auth.APIClient, Result: "failed"}
	}
	if err := db.AppendAudit(t.Context(), batch, 250, time.Hour, now.Add(300*time.Second)); err != nil {
		t.Fatal(err)
	}
	all, err := db.Audit(t.Context(), auth.AuditFilter{})
	if err != nil || len(all) != 250 || all[0].Login != "user299" || all[249].Login != "user50" {
		t.Fatalf("audit holds %d entries (%v), want user299 .. user50", len(all), err)
	}
}

// TestHealthAfterFailedWrite: a write etcd does not answer makes Health
// report ErrStoreWriteFailed until a write succeeds again.
func TestHealthAfterFailedWrite(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	db, err := etcdstore.Open(etcd.Config{Endpoints: c.Endpoints(), Timeout: 500 * time.Millisecond},
		fmt.Sprintf("/vmsauth-test/%d/", cases.Add(1)))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	storetest.CreateUser(t, db, "alice")
	c.Kill(0)
	if err := db.CreateUser(t.Context(), &auth.User{Login: "bob"}); !errors.Is(err, etcd.ErrUnavailable) {
		t.Fatalf("CreateUser with etcd down: %v, want etcd.ErrUnavailable", err)
	}
	if err := db.Health(t.Context()); !errors.Is(err, auth.ErrStoreWriteFailed) {
		t.Fatalf("Health after a failed write: %v, want ErrStoreWriteFailed", err)
	}
	c.Restart(0)
	storetest.CreateUser(t, db, "bob")
	if err := db.Health(t.Context()); err != nil {
		t.Fatalf("Health after a write succeeded again: %v", err)
	}
}
