package etcdstore_test

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"vmsauth/auth"
	"vmsauth/etcd"
	"vmsauth/etcd/etcdtest"
	"vmsauth/etcdstore"
	"vmsauth/store"
	"vmsauth/store/storetest"
)

// canonical is snap as JSON with its records in one order, to compare
// snapshots read from different backends.
func canonical(t *testing.T, snap *auth.Snapshot) []byte {
	t.Helper()
	c := *snap
	c.Sessions = slices.Clone(snap.Sessions)
	c.Refreshes = slices.Clone(snap.Refreshes)
	slices.SortFunc(c.Sessions, func(a, b *auth.Session) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(c.Refreshes, func(a, b *auth.Refresh) int { return bytes.Compare(a.Hash[:], b.Hash[:]) })
	b, err := json.MarshalIndent(&c, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A bbolt file's records go into a site (in many Txns: more than etcd
// takes in one) and come out again at one revision as the same records,
// and a database file written from them holds them too.
func TestSnapshotRoundTrip(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	now := storetest.Now
	db, err := store.Open(filepath.Join(t.TempDir(), "box.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var gone *auth.User
	for i := range 60 {
		u := storetest.CreateUser(t, db, fmt.Sprintf("User%02d", i))
		storetest.CreateSession(t, db, storetest.NewSession(t, u.ID, auth.APIClient, now), auth.CreateOptions{Now: now})
		storetest.NewFamily(t, db, u.ID)
		gone = u
	}
	if err := db.DeleteUser(t.Context(), gone.ID); err != nil {
		t.Fatal(err)
	}
	var entries []auth.AuditEntry
	for i := range 250 {
		entries = append(entries, auth.AuditEntry{Time: now.Add(time.Duration(i) * time.Second), IP: "192.0.2.7", Login: "user01", API: auth.APIClient, Result: "failed", Reason: "wrong_password"})
	}
	if err := db.AppendAudit(t.Context(), entries, 200, 24*time.Hour, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	snap, err := db.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Users) != 59 || snap.LastUserID != 60 || len(snap.Sessions) != 118 || len(snap.Refreshes) != 59 ||
		len(snap.Audit) != 200 || snap.LastAudit != 250 || snap.Audit[0].Seq != 51 {
		t.Fatalf("bbolt snapshot: %d users (last id %d), %d sessions, %d refreshes, %d audit (last %d)",
			len(snap.Users), snap.LastUserID, len(snap.Sessions), len(snap.Refreshes), len(snap.Audit), snap.LastAudit)
	}
	want := canonical(t, snap)

	ec, err := etcd.New(etcd.Config{Endpoints: c.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	site := etcdstore.New(ec, "/site/")
	defer site.Close()
	stats, err := site.Load(t.Context(), snap, "test")
	if err != nil {
		t.Fatal(err)
	}
	// 59 users (2 keys), 118 sessions (3), 59 refresh tokens (2), 200
	// audit entries: far more than one Txn takes.
	if stats.Revision < 2+(59*2+118*3+59*2+200)/120 {
		t.Fatalf("Load took too few Txns to respect etcd's limit: revision %d", stats.Revision)
	}
	got, rev, err := site.Snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if rev != stats.Revision {
		t.Fatalf("Snapshot read revision %d, Load ended at %d", rev, stats.Revision)
	}
	if g := canonical(t, got); !bytes.Equal(g, want) {
		t.Fatalf("the site's snapshot differs from the file's:\n%s\nwant\n%s", g, want)
	}
	// The site works on what was loaded: the login index and the counter.
	if u, err := site.UserByLogin(t.Context(), "USER03"); err != nil || u.Login != "User03" {
		t.Fatalf("login index after Load: %v %v", u, err)
	}
	u := storetest.CreateUser(t, site, "newcomer")
	if u.ID != 61 {
		t.Fatalf("a new user on the site got id %d, want 61 (the counter came along)", u.ID)
	}

	path := filepath.Join(t.TempDir(), "copy.db")
	if err := store.WriteSnapshot(path, got); err != nil {
		t.Fatal(err)
	}
	copied, err := store.Open(path, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer copied.Close()
	if err := copied.Check(); err != nil {
		t.Fatal(err)
	}
	back, err := copied.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if g := canonical(t, back); !bytes.Equal(g, want) {
		t.Fatalf("the written file's snapshot differs:\n%s\nwant\n%s", g, want)
	}
	if err := store.WriteSnapshot(path, got); err == nil {
		t.Fatal("WriteSnapshot wrote over an existing file")
	}

	// A prefix that holds anything is refused, and left as it was.
	before, _, err := site.Snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := site.Load(t.Context(), snap, "again"); !errors.Is(err, etcdstore.ErrSiteExists) {
		t.Fatalf("Load onto a site: %v", err)
	}
	after, _, err := site.Snapshot(t.Context())
	if err != nil || !bytes.Equal(canonical(t, before), canonical(t, after)) {
		t.Fatalf("a refused Load changed the site (%v)", err)
	}
}

// Snapshots that would make a broken site or file are refused.
func TestSnapshotRefused(t *testing.T) {
	h := storetest.RandomHash(t)
	user := func(id int64, login string) *auth.User { return &auth.User{ID: id, Login: login} }
	for name, snap := range map[string]*auth.Snapshot{
		"id above counter": {LastUserID: 1, Users: []*auth.User{user(2, "a")}},
		"login twice":      {LastUserID: 2, Users: []*auth.User{user(1, "a"), user(2, "A")}},
		"session of no user": {LastUserID: 1, Users: []*auth.User{user(1, "a")},
			Sessions: []*auth.Session{{ID: h.SessionID(), TokenHash: h, UserID: 2, API: auth.APIClient}}},
		"audit above counter": {LastAudit: 1, Audit: []auth.AuditRecord{{Seq: 2}}},
	} {
		if err := store.WriteSnapshot(filepath.Join(t.TempDir(), "x.db"), snap); err == nil {
			t.Errorf("%s: WriteSnapshot took it", name)
		}
		// Load checks before it writes anything: no cluster is needed to
		// see it refuse (the client never connects).
		ec, err := etcd.New(etcd.Config{Endpoints: []string{"http://127.0.0.1:1"}, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := etcdstore.New(ec, "/x/").Load(t.Context(), snap, "test"); err == nil || errors.Is(err, auth.ErrUnavailable) {
			t.Errorf("%s: Load did not refuse it before writing: %v", name, err)
		}
	}
}
