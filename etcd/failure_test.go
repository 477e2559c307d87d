package etcd

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"vmsauth/etcd/etcdtest"
)

// leaderFirst returns the cluster's endpoints with the leader's first, and
// the leader's index; it also checks Status and MemberList.
func leaderFirst(t *testing.T, cl *etcdtest.Cluster, c *Client) ([]string, int) {
	t.Helper()
	ctx := ctxT(t)
	_, members, err := c.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != len(cl.Members) {
		t.Fatalf("%d members listed, want %d", len(members), len(cl.Members))
	}
	names := map[uint64]string{}
	for _, m := range members {
		if m.Name == "" || len(m.ClientURLs) != 1 || len(m.PeerURLs) != 1 || m.ID == 0 {
			t.Fatalf("member %+v", m)
		}
		names[m.ID] = m.Name
	}
	leader := -1
	for i, ep := range cl.Endpoints() {
		st, err := c.StatusOf(ctx, ep)
		if err != nil {
			t.Fatal(err)
		}
		if st.Version == "" || st.DBSize == 0 || st.RaftIndex == 0 || st.Leader == 0 ||
			names[st.Header.MemberID] != cl.Members[i].Name {
			t.Fatalf("status of %s: %+v", ep, st)
		}
		if st.Leader == st.Header.MemberID {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatal("no member says it leads")
	}
	eps := []string{cl.Members[leader].ClientURL}
	for i, ep := range cl.Endpoints() {
		if i != leader {
			eps = append(eps, ep)
		}
	}
	return eps, leader
}

// TestRotation kills the leader, which the client is talking to, during a
// stream of writes: the writes go on on the other members after an
// election. The longest pause is logged (about the election timeout plus
// the per-request timeout of the write that was in flight).
func TestRotation(t *testing.T) {
	cl := etcdtest.Start(t, etcdtest.Options{Members: 3})
	probe := newClient(t, cl, Config{})
	eps, leader := leaderFirst(t, cl, probe)
	c, err := New(Config{Endpoints: eps, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := ctxT(t)

	var longest time.Duration
	last := time.Now()
	maybe, killedAt, afterKill := 0, -1, 0
	for i := 0; afterKill < 50; i++ {
		if i == 30 {
			cl.Kill(leader)
			killedAt = i
		}
		_, err := c.Put(ctx, PutRequest{Key: fmt.Appendf(nil, "/rot/%d", i), Value: []byte("v")})
		if err != nil {
			// A write in flight when the leader died: the caller would
			// check or retry it. Anything else is a failure.
			if !errors.Is(err, ErrMaybeApplied) && !errors.Is(err, ErrUnavailable) {
				t.Fatalf("write %d: %v", i, err)
			}
			maybe++
			if time.Since(last) > 15*time.Second {
				t.Fatalf("no write for 15 s: %v", err)
			}
			continue
		}
		if gap := time.Since(last); gap > longest {
			longest = gap
		}
		last = time.Now()
		if killedAt >= 0 {
			afterKill++
		}
	}
	if c.Endpoints()[int(c.cur.Load())] == cl.Members[leader].ClientURL {
		t.Fatal("the client still starts at the dead member")
	}
	t.Logf("leader killed: longest pause between two writes %s, %d writes failed as maybe applied or unavailable",
		longest.Round(time.Millisecond), maybe)
	// Reads go on too, on any member.
	if _, err := c.Range(ctx, RangeRequest{Key: []byte("/rot/0")}); err != nil {
		t.Fatal(err)
	}
}

// TestNoMajority kills two members of three: a write fails with a typed
// error within about the per-request timeout (no hang), a serializable
// read still answers from the member left, a linearizable one fails as
// unavailable. When the members return, writes work again.
func TestNoMajority(t *testing.T) {
	cl := etcdtest.Start(t, etcdtest.Options{Members: 3})
	const timeout = time.Second
	c := newClient(t, cl, Config{Timeout: timeout})
	ctx := ctxT(t)
	put(t, c, "/nm/k", "before")
	cl.Kill(0)
	cl.Kill(1)

	// Every write starts at a dead member and moves on (a refused
	// connection was certainly not applied) to the one left, which cannot
	// commit it.
	for i := 0; i < 2; i++ {
		start := time.Now()
		_, err := c.Put(ctx, PutRequest{Key: []byte("/nm/k"), Value: []byte("during")})
		took := time.Since(start)
		t.Logf("write without a majority: %s after %s", err, took.Round(time.Millisecond))
		if !errors.Is(err, ErrMaybeApplied) && !errors.Is(err, ErrUnavailable) {
			t.Fatalf("got %v, want ErrMaybeApplied or ErrUnavailable", err)
		}
		if took > timeout+time.Second {
			t.Fatalf("write took %s, want about the per-request timeout %s", took, timeout)
		}
	}
	start := time.Now()
	r, err := c.Range(ctx, RangeRequest{Key: []byte("/nm/k"), Serializable: true})
	if err != nil || keys(r.KVs) != "/nm/k=before" {
		t.Fatalf("serializable read: %+v, %v", r, err)
	}
	t.Logf("serializable read without a majority: %s", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	_, err = c.Range(ctx, RangeRequest{Key: []byte("/nm/k")})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("linearizable read: %v, want ErrUnavailable", err)
	}
	if took := time.Since(start); took > 3*timeout+time.Second {
		t.Fatalf("linearizable read took %s", took)
	}

	cl.Restart(0)
	cl.Restart(1)
	put(t, c, "/nm/k", "after")
}
