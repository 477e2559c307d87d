package etcd

import (
	"errors"
	"testing"
	"time"

	"vmsauth/etcd/etcdtest"
)

// TestAuth runs on a cluster whose tokens live one second (etcd's
// --auth-token-ttl), so a token expires between two requests and the client
// must renew it.
func TestAuth(t *testing.T) {
	t.Parallel() // mostly waiting for tokens to expire
	cl := etcdtest.Start(t, etcdtest.Options{AuthTokenTTL: 1})
	cl.EnableAuth("rootpw", etcdtest.User{Name: "box", Password: "boxpw", Prefix: "/site/"})
	ctx := ctxT(t)

	t.Run("OK", func(t *testing.T) {
		c := newClient(t, cl, Config{Username: "box", Password: "boxpw"})
		put(t, c, "/site/a", "1")
		r, err := c.Range(ctx, RangeRequest{Key: []byte("/site/a")})
		if err != nil || keys(r.KVs) != "/site/a=1" {
			t.Fatalf("got %+v, %v", r, err)
		}
		if n := c.auths.Load(); n != 1 {
			t.Fatalf("%d authentications, want 1", n)
		}
	})
	t.Run("OKRenewExpiredToken", func(t *testing.T) {
		c := newClient(t, cl, Config{Username: "box", Password: "boxpw"})
		put(t, c, "/site/b", "1")
		time.Sleep(2500 * time.Millisecond) // the token expires
		put(t, c, "/site/b", "2")
		if n := c.auths.Load(); n != 2 {
			t.Fatalf("%d authentications, want 2 (one renewal)", n)
		}
		time.Sleep(2500 * time.Millisecond)
		w, err := c.Watch(ctx, WatchRequest{Key: []byte("/site/b"), StartRevision: 1})
		if err != nil {
			t.Fatalf("watch after the token expired: %v", err)
		}
		defer w.Close()
		if evs := nextEvents(t, w, 2); string(evs[1].KV.Value) != "2" {
			t.Fatalf("events %+v", evs)
		}
		if n := c.auths.Load(); n != 3 {
			t.Fatalf("%d authentications, want 3 (two renewals)", n)
		}
	})
	t.Run("ErrPermissionDenied", func(t *testing.T) {
		c := newClient(t, cl, Config{Username: "box", Password: "boxpw"})
		_, err := c.Put(ctx, PutRequest{Key: []byte("/elsewhere"), Value: []byte("x")})
		if !errors.Is(err, ErrPermissionDenied) {
			t.Fatalf("got %v, want ErrPermissionDenied", err)
		}
		if n := c.auths.Load(); n != 1 {
			t.Fatalf("%d authentications: a permission denied must not renew", n)
		}
	})
	t.Run("ErrAuthWrongPassword", func(t *testing.T) {
		c := newClient(t, cl, Config{Username: "box", Password: "wrong"})
		_, err := c.Range(ctx, RangeRequest{Key: []byte("/site/a")})
		if !errors.Is(err, ErrAuth) {
			t.Fatalf("got %v, want ErrAuth", err)
		}
	})
	t.Run("ErrAuthNoUser", func(t *testing.T) {
		c := newClient(t, cl, Config{})
		_, err := c.Put(ctx, PutRequest{Key: []byte("/site/a"), Value: []byte("x")})
		if !errors.Is(err, ErrAuth) {
			t.Fatalf("got %v, want ErrAuth", err)
		}
	})
}

func TestLease(t *testing.T) {
	t.Parallel() // mostly waiting for the lease to expire
	cl := etcdtest.Start(t, etcdtest.Options{})
	c := newClient(t, cl, Config{})
	ctx := ctxT(t)
	exists := func(k string) bool {
		t.Helper()
		r, err := c.Range(ctx, RangeRequest{Key: []byte(k), CountOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		return r.Count == 1
	}

	l, err := c.Grant(ctx, 2)
	if err != nil || l.ID == 0 || l.TTL < 2 {
		t.Fatalf("grant: %+v, %v", l, err)
	}
	if _, err := c.Put(ctx, PutRequest{Key: []byte("/lease/a"), Value: []byte("x"), Lease: l.ID}); err != nil {
		t.Fatal(err)
	}
	r, err := c.Range(ctx, RangeRequest{Key: []byte("/lease/a")})
	if err != nil || len(r.KVs) != 1 || r.KVs[0].Lease != l.ID {
		t.Fatalf("key's lease: %+v, %v", r, err)
	}
	// Kept alive twice as long as its TTL, it stays.
	for i := 0; i < 8; i++ {
		time.Sleep(500 * time.Millisecond)
		k, err := c.KeepAliveOnce(ctx, l.ID)
		if err != nil || k.ID != l.ID || k.TTL < 2 {
			t.Fatalf("keepalive: %+v, %v", k, err)
		}
	}
	if !exists("/lease/a") {
		t.Fatal("key of a lease kept alive is gone")
	}
	ttl, err := c.TimeToLive(ctx, l.ID)
	if err != nil || ttl.TTL < 1 || ttl.TTL > 2 {
		t.Fatalf("time to live: %+v, %v", ttl, err)
	}
	// Left alone, it expires with its key.
	deadline := time.Now().Add(6 * time.Second)
	for exists("/lease/a") {
		if time.Now().After(deadline) {
			t.Fatal("key of an expired lease still there")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := c.KeepAliveOnce(ctx, l.ID); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("keepalive of an expired lease: %v", err)
	}
	if _, err := c.TimeToLive(ctx, l.ID); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("time to live of an expired lease: %v", err)
	}

	// Revoked, its keys go at once.
	l2, err := c.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, PutRequest{Key: []byte("/lease/b"), Value: []byte("x"), Lease: l2.ID}); err != nil {
		t.Fatal(err)
	}
	if err := c.Revoke(ctx, l2.ID); err != nil {
		t.Fatal(err)
	}
	if exists("/lease/b") {
		t.Fatal("key of a revoked lease still there")
	}
	if err := c.Revoke(ctx, l2.ID); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("second revoke: %v", err)
	}
}
