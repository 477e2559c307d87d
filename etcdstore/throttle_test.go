package etcdstore_test

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"vmsauth/auth"
	"vmsauth/captcha"
	"vmsauth/etcd"
	"vmsauth/etcd/etcdtest"
	"vmsauth/etcdstore"
)

// sharedBoxes opens two stores of one site, each starting at another member
// of the cluster, and their shared keys.
func sharedBoxes(t *testing.T, c *etcdtest.Cluster) ([2]*etcdstore.Store, [2]*etcdstore.Shared) {
	t.Helper()
	prefix := fmt.Sprintf("/vmsauth-test/shared-%d/", cases.Add(1))
	var stores [2]*etcdstore.Store
	var shared [2]*etcdstore.Shared
	for i := range 2 {
		eps := append(c.Endpoints()[i:], c.Endpoints()[:i]...)
		s, err := etcdstore.Open(etcd.Config{Endpoints: eps}, prefix)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		stores[i], shared[i] = s, etcdstore.NewShared(s)
	}
	return stores, shared
}

// TestSharedCounterRace: 60 parallel takes of one key with a limit of 10,
// split over two stores (two boxes) on different members of a 3-member
// cluster, let exactly 10 through; the same through two auth.Throttles,
// for a login named from 60 addresses. The key holds a lease, and the
// writes share leases rather than granting one each.
func TestSharedCounterRace(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	stores, shared := sharedBoxes(t, c)
	const limit, takes = 10, 60

	var allowed atomic.Int64
	var wg sync.WaitGroup
	for i := range takes {
		wg.Go(func() {
			now := time.Now().UnixNano()
			took := false
			err := shared[i%2].Update(t.Context(), "ip/192.0.2.1", auth.DefaultWindow, func(hits []int64) ([]int64, bool) {
				took = len(hits) < limit
				if !took {
					return nil, false
				}
				return append(append([]int64(nil), hits...), now), true
			})
			if err != nil {
				t.Error(err)
			}
			if took {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	if got := allowed.Load(); got != limit {
		t.Fatalf("%d of %d parallel takes were allowed over two boxes, want %d", got, takes, limit)
	}

	throttles := [2]*auth.Throttle{}
	for i := range 2 {
		throttles[i] = auth.NewThrottle(auth.ThrottleConfig{LoginLimit: limit, Shared: shared[i], HashKey: []byte("site key")})
	}
	allowed.Store(0)
	for i := range takes {
		wg.Go(func() {
			d, _ := throttles[i%2].Begin(t.Context(), fmt.Sprintf("198.51.100.%d", i), "nobody")
			if d.Err != nil {
				t.Error(d.Err)
			}
			if d.Allowed {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	if got := allowed.Load(); got != limit {
		t.Fatalf("%d of %d parallel attempts at one login were allowed over two boxes, want %d", got, takes, limit)
	}

	// Every counter written holds a lease, and the writes shared them:
	// one box grants one lease for a window's worth of writes.
	r, err := etcd.New(etcd.Config{Endpoints: c.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	kvs, err := r.Range(t.Context(), etcd.RangeRequest{Key: []byte("/vmsauth-test/"), RangeEnd: etcd.PrefixEnd([]byte("/vmsauth-test/"))})
	if err != nil {
		t.Fatal(err)
	}
	leases := map[int64]bool{}
	counters := 0
	for _, kv := range kvs.KVs {
		if !bytes.Contains(kv.Key, []byte("/t/")) {
			continue
		}
		counters++
		if kv.Lease == 0 {
			t.Errorf("counter %s has no lease", kv.Key)
		}
		leases[kv.Lease] = true
	}
	// 1 IP counter, 60 IP counters of the throttles, 1 login counter.
	if counters != 62 || len(leases) > 2 {
		t.Fatalf("%d counters under %d leases, want 62 under at most 2 (one per box)", counters, len(leases))
	}
	_ = stores
}

// TestSharedCaptcha: a captcha drawn with the site's secret on one box is
// checked on the other once; the second answer, on either box, is
// refused. The secret is made once: every box reads the same.
func TestSharedCaptcha(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	_, shared := sharedBoxes(t, c)
	var caps [2]*captcha.Captchas
	var secrets [2][]byte
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			s, err := shared[i].Secret(t.Context(), "captcha-secret", captcha.SecretSize)
			if err != nil {
				t.Error(err)
			}
			secrets[i] = s
		})
	}
	wg.Wait()
	if !bytes.Equal(secrets[0], secrets[1]) || len(secrets[0]) != captcha.SecretSize {
		t.Fatalf("two boxes starting at once read different secrets: %x %x", secrets[0], secrets[1])
	}
	for i := range 2 {
		cp, err := captcha.New(captcha.Config{Secret: secrets[i], Used: shared[i], Graces: shared[i].Graces(),
			Digits: func(int) []byte { return []byte{1, 2, 3, 4, 5} },
			Image:  func(string, []byte) ([]byte, error) { return nil, nil }})
		if err != nil {
			t.Fatal(err)
		}
		caps[i] = cp
	}
	key, _, err := caps[0].New()
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := caps[1].Verify(key, "12345"); !ok || err != nil {
		t.Fatalf("box B checking A's captcha: %v %v", ok, err)
	}
	for i := range 2 {
		if ok, err := caps[i].Verify(key, "12345"); ok || err != nil {
			t.Fatalf("box %d accepted a captcha already used: %v %v", i, ok, err)
		}
	}
	// A session-limit grace given on A is seen and spent on B, once.
	caps[0].GrantGrace("Alice", key)
	if !caps[1].HasGrace("alice", key) || caps[1].HasGrace("bob", key) {
		t.Fatal("B does not see the grace A gave alice (or gives it to bob)")
	}
	if !caps[1].UseGrace("alice", key) || caps[0].UseGrace("alice", key) {
		t.Fatal("a grace was not spent exactly once over two boxes")
	}
}

// TestSharedLeaseGone: a lease etcd no longer has (revoked, or the cluster
// restored from a snapshot) is replaced at the next write, and its keys,
// gone with it, start again from nothing.
func TestSharedLeaseGone(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	_, shared := sharedBoxes(t, c)
	count := func() int {
		n := 0
		err := shared[0].Update(t.Context(), "login/u1", auth.DefaultWindow, func(hits []int64) ([]int64, bool) {
			n = len(hits) + 1
			return append(append([]int64(nil), hits...), time.Now().UnixNano()), true
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	count()
	if n := count(); n != 2 {
		t.Fatalf("second event: %d counted", n)
	}
	r, err := etcd.New(etcd.Config{Endpoints: c.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	kvs, err := r.Range(t.Context(), etcd.RangeRequest{Key: []byte("/vmsauth-test/"), RangeEnd: etcd.PrefixEnd([]byte("/vmsauth-test/"))})
	if err != nil || len(kvs.KVs) != 1 || kvs.KVs[0].Lease == 0 {
		t.Fatalf("want one leased counter: %+v %v", kvs, err)
	}
	if err := r.Revoke(t.Context(), kvs.KVs[0].Lease); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 1 {
		t.Fatalf("after the lease was revoked: %d counted, want 1", n)
	}
}
