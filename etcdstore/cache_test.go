package etcdstore_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"vmsauth/auth"
	"vmsauth/etcd"
	"vmsauth/etcd/etcdtest"
	"vmsauth/etcdstore"
	"vmsauth/store/storetest"
)

// twoBoxes opens two stores on one prefix of c: two boxes of a site.
func twoBoxes(t *testing.T, c *etcdtest.Cluster, endpointsB ...string) (a, b *etcdstore.Store) {
	t.Helper()
	prefix := fmt.Sprintf("/vmsauth-test/cache-%d/", cases.Add(1))
	if len(endpointsB) == 0 {
		endpointsB = c.Endpoints()
	}
	for i, eps := range [][]string{c.Endpoints(), endpointsB} {
		s, err := etcdstore.Open(etcd.Config{Endpoints: eps}, prefix)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		if i == 0 {
			a = s
		} else {
			b = s
		}
	}
	return a, b
}

// cachedOn makes a token check on b, twice, and waits until b's cache
// holds n sessions.
func cachedOn(t *testing.T, b *etcdstore.Store, s *auth.Session, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, _, err := b.SessionByHash(t.Context(), s.TokenHash); err != nil {
			t.Fatalf("SessionByHash on B: %v", err)
		}
		if st := b.WatchState(); st.Up && st.Cached == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("B's cache does not fill: %+v", b.WatchState())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// eventually polls fn until it holds, for at most 2 s.
func eventually(t *testing.T, what string, fn func() bool) {
	t.Helper()
	for start := time.Now(); !fn(); time.Sleep(time.Millisecond) {
		if time.Since(start) > 2*time.Second {
			t.Fatalf("%s: not within 2 s", what)
		}
	}
}

// Every change on box A that ends or changes a session reaches box B's
// cache: B's next check refuses the token or sees the new user.
func TestCacheFollowsOtherBox(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	ctx := t.Context()
	setup := func(t *testing.T) (a, b *etcdstore.Store, alice *auth.User, s *auth.Session) {
		a, b = twoBoxes(t, c)
		alice = storetest.CreateUser(t, a, "alice")
		s = storetest.CreateSession(t, a, storetest.NewSession(t, alice.ID, auth.APIClient, storetest.Now), auth.CreateOptions{})
		cachedOn(t, b, s, 1)
		return a, b, alice, s
	}
	gone := func(t *testing.T, b *etcdstore.Store, s *auth.Session) {
		t.Helper()
		eventually(t, "B refuses the token", func() bool {
			_, _, err := b.SessionByHash(ctx, s.TokenHash)
			if err != nil && !errors.Is(err, auth.ErrSessionNotFound) {
				t.Fatal(err)
			}
			return err != nil
		})
	}
	t.Run("Logout", func(t *testing.T) {
		a, b, _, s := setup(t)
		if err := a.DeleteSession(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
		gone(t, b, s)
	})
	t.Run("PasswordChange", func(t *testing.T) {
		a, b, alice, s := setup(t)
		if _, err := a.UpdateUser(ctx, alice.ID, func(u *auth.User) ([]auth.API, error) {
			u.PasswordHash = "another hash"
			return auth.AllAPIs, nil
		}); err != nil {
			t.Fatal(err)
		}
		gone(t, b, s)
	})
	t.Run("Disable", func(t *testing.T) {
		// A change of the user alone, that ends no session: B must read
		// the user again rather than keep the one it cached.
		a, b, alice, s := setup(t)
		if _, err := a.UpdateUser(ctx, alice.ID, func(u *auth.User) ([]auth.API, error) {
			u.Disabled = true
			return nil, nil
		}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "B sees the user disabled", func() bool {
			_, u, err := b.SessionByHashShared(ctx, s.TokenHash)
			if err != nil {
				t.Fatal(err)
			}
			return u.Disabled
		})
	})
	t.Run("DeleteUser", func(t *testing.T) {
		a, b, alice, s := setup(t)
		if err := a.DeleteUser(ctx, alice.ID); err != nil {
			t.Fatal(err)
		}
		gone(t, b, s)
	})
	t.Run("Touch", func(t *testing.T) {
		// A's touch is written within a second and replaces B's copy; a
		// touch never brings back a session ended meanwhile.
		a, b, _, s := setup(t)
		seen := storetest.Now.Add(time.Minute)
		if err := a.TouchSession(ctx, s.TokenHash, seen, seen.Add(time.Hour), "198.51.100.9"); err != nil {
			t.Fatal(err)
		}
		if got, _, err := a.SessionByHash(ctx, s.TokenHash); err != nil || got.IP != "198.51.100.9" {
			t.Fatalf("A's own read of its touch: %+v, %v", got, err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			got, _, err := b.SessionByHash(ctx, s.TokenHash)
			if err != nil {
				t.Fatal(err)
			}
			if got.IP == "198.51.100.9" && got.LastSeen.Equal(seen) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("A's touch not on B: %+v", got)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if st := b.WatchState(); st.Cached != 1 {
			t.Fatalf("a touch should replace B's copy, not forget it: %+v", st)
		}
		if err := b.TouchSession(ctx, s.TokenHash, seen.Add(time.Minute), seen.Add(2*time.Hour), ""); err != nil {
			t.Fatal(err)
		}
		if err := a.DeleteSession(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
		if err := b.Close(); err != nil { // flushes B's touch
			t.Fatal(err)
		}
		_, err := a.Session(ctx, s.ID)
		storetest.WantErr(t, err, auth.ErrSessionNotFound)
	})
}

// A check that missed reads etcd, and a logout may be applied by the watch
// before the check fills the cache with what it read: the fill must not
// bring the session back.
func TestCacheFillRace(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	ctx := t.Context()
	a, b := twoBoxes(t, c)
	alice := storetest.CreateUser(t, a, "alice")
	s1 := storetest.CreateSession(t, a, storetest.NewSession(t, alice.ID, auth.APIClient, storetest.Now), auth.CreateOptions{})
	s2 := storetest.CreateSession(t, a, storetest.NewSession(t, alice.ID, auth.APIClient, storetest.Now), auth.CreateOptions{})
	cachedOn(t, b, s2, 1) // the watch is up
	err := b.ReadThenFill(ctx, s1.TokenHash, func() {
		if err := a.DeleteSession(ctx, s1.ID); err != nil {
			t.Fatal(err)
		}
		// B's watch applies it.
		ca, err := etcd.New(etcd.Config{Endpoints: c.Endpoints()})
		if err != nil {
			t.Fatal(err)
		}
		defer ca.Close()
		r, err := ca.Range(ctx, etcd.RangeRequest{Key: []byte("x")})
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, "B's watch applies the logout", func() bool { return b.WatchState().Revision >= r.Header.Revision })
	})
	if err != nil {
		t.Fatal(err)
	}
	if st := b.WatchState(); st.Cached != 1 {
		t.Fatalf("a read older than the watch filled the cache: %+v", st)
	}
	_, _, err = b.SessionByHash(ctx, s1.TokenHash)
	storetest.WantErr(t, err, auth.ErrSessionNotFound)
}

// While the watch is down, checks read etcd rather than the cache, which
// no longer follows the site.
func TestCacheBypassedWithoutWatch(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	ctx := t.Context()
	a, b := twoBoxes(t, c)
	alice := storetest.CreateUser(t, a, "alice")
	s := storetest.CreateSession(t, a, storetest.NewSession(t, alice.ID, auth.APIClient, storetest.Now), auth.CreateOptions{})
	cachedOn(t, b, s, 1)
	b.BreakWatch()
	if st := b.WatchState(); st.Up || st.Cached != 1 || st.Error == "" {
		t.Fatalf("WatchState after the watch broke: %+v", st)
	}
	if err := a.DeleteSession(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	_, _, err := b.SessionByHash(ctx, s.TokenHash)
	storetest.WantErr(t, err, auth.ErrSessionNotFound)
}

// cutProxy passes TCP connections on to target until cut, which closes
// them all and refuses new ones until mend.
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  []net.Conn
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: strings.TrimPrefix(target, "http://")}
	t.Cleanup(func() { ln.Close(); p.setCut(true) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.cut {
				p.mu.Unlock()
				c.Close()
				continue
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				p.mu.Unlock()
				c.Close()
				continue
			}
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
	return p
}

func (p *cutProxy) URL() string { return "http://" + p.ln.Addr().String() }

func (p *cutProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for _, c := range p.conns {
			c.Close()
		}
		p.conns = nil
	}
}

// A box whose watch was down while the revision it needs was compacted
// empties its cache and watches afresh; what changed meanwhile holds.
func TestCacheCompacted(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	ctx := t.Context()
	// B reaches etcd through a proxy that can cut it off.
	p := newCutProxy(t, c.Endpoints()[0])
	a, b := twoBoxes(t, c, p.URL())
	alice := storetest.CreateUser(t, a, "alice")
	s1 := storetest.CreateSession(t, a, storetest.NewSession(t, alice.ID, auth.APIClient, storetest.Now), auth.CreateOptions{})
	s2 := storetest.CreateSession(t, a, storetest.NewSession(t, alice.ID, auth.APIClient, storetest.Now), auth.CreateOptions{})
	cachedOn(t, b, s1, 1)
	cachedOn(t, b, s2, 2)
	before := b.WatchState().Revision

	p.setCut(true)
	eventually(t, "B's watch breaks", func() bool { return !b.WatchState().Up })
	// A ends s1, writes on, and compacts past both.
	ca, err := etcd.New(etcd.Config{Endpoints: c.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	if err := a.DeleteSession(ctx, s1.ID); err != nil {
		t.Fatal(err)
	}
	r, err := ca.Put(ctx, etcd.PutRequest{Key: []byte("/elsewhere"), Value: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Compact(ctx, r.Header.Revision, true); err != nil {
		t.Fatal(err)
	}
	p.setCut(false)

	deadline := time.Now().Add(20 * time.Second)
	for st := b.WatchState(); !st.Up || st.Revision <= before; st = b.WatchState() {
		if time.Now().After(deadline) {
			t.Fatalf("B's watch is not up again after the compaction: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := b.WatchState(); st.Cached != 0 {
		t.Fatalf("B kept its cache across a compaction it could not follow: %+v", st)
	}
	_, _, err = b.SessionByHash(ctx, s1.TokenHash)
	storetest.WantErr(t, err, auth.ErrSessionNotFound)
	if _, _, err := b.SessionByHash(ctx, s2.TokenHash); err != nil {
		t.Fatalf("s2 on B after the compaction: %v", err)
	}
}

// Without a majority, a cached session is answered for the grace after
// the watch was lost, then refused with auth.ErrUnavailable; a session not
// cached is refused at once. All comes back with the members.
func TestCacheStaleGrace(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	ctx := t.Context()
	a, b := twoBoxes(t, c)
	const grace = 2 * time.Second
	b.SetStaleGrace(grace)
	alice := storetest.CreateUser(t, a, "alice")
	cachedS := storetest.CreateSession(t, a, storetest.NewSession(t, alice.ID, auth.APIClient, storetest.Now), auth.CreateOptions{})
	other := storetest.CreateSession(t, a, storetest.NewSession(t, alice.ID, auth.APIClient, storetest.Now), auth.CreateOptions{})
	cachedOn(t, b, cachedS, 1)

	c.Kill(1)
	c.Kill(2)
	_, _, err := b.SessionByHash(ctx, other.TokenHash)
	storetest.WantErr(t, err, auth.ErrUnavailable)
	var lost time.Time
	servedDown := false
	for {
		_, _, err := b.SessionByHash(ctx, cachedS.TokenHash)
		st := b.WatchState()
		if err != nil {
			storetest.WantErr(t, err, auth.ErrUnavailable)
			if st.Up || time.Since(st.Since) < grace {
				t.Fatalf("refused within the grace: %v, %+v", err, st)
			}
			lost = st.Since
			break
		}
		servedDown = servedDown || !st.Up
		if !st.Up && time.Since(st.Since) > grace+time.Second {
			t.Fatalf("still answered from the cache past the grace: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !servedDown {
		t.Fatal("never answered from the cache while the watch was down")
	}
	if st := b.WatchState(); st.Error == "" {
		t.Fatalf("WatchState without a majority says no error: %+v", st)
	}
	t.Logf("watch lost %v, refused after the grace", lost)

	c.Restart(1)
	c.Restart(2)
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, _, err := b.SessionByHash(ctx, cachedS.TokenHash)
		if err == nil {
			break
		}
		if !errors.Is(err, auth.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("after the members returned: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	eventually(t, "the watch is up again", func() bool { return b.WatchState().Up })
}

// A watch that comes back after a break resumes where it stopped, and etcd
// replays what it missed only after the watch is created: a cache that
// called itself up at creation answered a session ended meanwhile from its
// old entries until the replay arrived (about 100 ms), even with no stale
// grace. Once B's watch is up again, s1 must be refused at every check.
func TestCacheResumedWatchServesNothingStale(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	ctx := t.Context()
	p := newCutProxy(t, c.Endpoints()[0])
	a, b := twoBoxes(t, c, p.URL())
	b.SetStaleGrace(0)
	alice := storetest.CreateUser(t, a, "alice")
	s1 := storetest.CreateSession(t, a, storetest.NewSession(t, alice.ID, auth.APIClient, storetest.Now), auth.CreateOptions{})
	cachedOn(t, b, s1, 1)

	p.setCut(true)
	eventually(t, "B's watch breaks", func() bool { return !b.WatchState().Up })
	if err := a.DeleteSession(ctx, s1.ID); err != nil {
		t.Fatal(err)
	}
	p.setCut(false)
	deadline := time.Now().Add(20 * time.Second)
	for !b.WatchState().Up {
		if time.Now().After(deadline) {
			t.Fatalf("B's watch is not up again: %+v", b.WatchState())
		}
		time.Sleep(time.Millisecond)
	}
	for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); {
		if _, _, err := b.SessionByHash(ctx, s1.TokenHash); err == nil {
			t.Fatalf("B accepted a session ended while its watch was down, with its watch up again: %+v", b.WatchState())
		}
	}
}
