package etcd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"vmsauth/etcd/etcdtest"
)

func newClient(t testing.TB, cl *etcdtest.Cluster, cfg Config) *Client {
	t.Helper()
	cfg.Endpoints = cl.Endpoints()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func put(t testing.TB, c *Client, k, v string) *PutResponse {
	t.Helper()
	r, err := c.Put(ctxT(t), PutRequest{Key: []byte(k), Value: []byte(v)})
	if err != nil {
		t.Fatalf("put %s: %v", k, err)
	}
	return r
}

func keys(kvs []KeyValue) string {
	var b bytes.Buffer
	for i, kv := range kvs {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.Write(kv.Key)
		if len(kv.Value) > 0 {
			b.WriteByte('=')
			b.Write(kv.Value)
		}
	}
	return b.String()
}

func TestKV(t *testing.T) {
	cl := etcdtest.Start(t, etcdtest.Options{})
	c := newClient(t, cl, Config{})
	ctx := ctxT(t)

	r1 := put(t, c, "/a/1", "one")
	put(t, c, "/a/2", "two")
	put(t, c, "/a/3", "three")
	put(t, c, "/b/1", "other")
	if r1.Header.Revision < 2 || r1.Header.ClusterID == 0 || r1.Header.MemberID == 0 {
		t.Fatalf("header not read: %+v", r1.Header)
	}

	t.Run("OKGetOne", func(t *testing.T) {
		r, err := c.Range(ctx, RangeRequest{Key: []byte("/a/2")})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.KVs) != 1 || string(r.KVs[0].Value) != "two" || r.Count != 1 {
			t.Fatalf("got %+v", r)
		}
		kv := r.KVs[0]
		if kv.CreateRevision != r1.Header.Revision+1 || kv.ModRevision != kv.CreateRevision || kv.Version != 1 {
			t.Fatalf("revisions not read: %+v", kv)
		}
	})
	t.Run("OKMissing", func(t *testing.T) {
		r, err := c.Range(ctx, RangeRequest{Key: []byte("/nope")})
		if err != nil || len(r.KVs) != 0 || r.Count != 0 || r.Header.Revision == 0 {
			t.Fatalf("got %+v, %v", r, err)
		}
	})
	t.Run("OKPrefixLimitMore", func(t *testing.T) {
		r, err := c.Range(ctx, RangeRequest{Key: []byte("/a/"), RangeEnd: PrefixEnd([]byte("/a/")), Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		if keys(r.KVs) != "/a/1=one /a/2=two" || !r.More || r.Count != 3 {
			t.Fatalf("got %q more=%v count=%d", keys(r.KVs), r.More, r.Count)
		}
	})
	t.Run("OKKeysOnlyCountOnlySerializable", func(t *testing.T) {
		r, err := c.Range(ctx, RangeRequest{Key: []byte("/a/"), RangeEnd: PrefixEnd([]byte("/a/")), KeysOnly: true, Serializable: true})
		if err != nil || keys(r.KVs) != "/a/1 /a/2 /a/3" {
			t.Fatalf("keys only: %q, %v", keys(r.KVs), err)
		}
		r, err = c.Range(ctx, RangeRequest{Key: []byte("/"), RangeEnd: PrefixEnd([]byte("/")), CountOnly: true})
		if err != nil || len(r.KVs) != 0 || r.Count != 4 {
			t.Fatalf("count only: %+v, %v", r, err)
		}
	})
	t.Run("OKAtRevision", func(t *testing.T) {
		before := put(t, c, "/a/1", "uno").Header.Revision - 1
		r, err := c.Range(ctx, RangeRequest{Key: []byte("/a/1"), Revision: before})
		if err != nil || keys(r.KVs) != "/a/1=one" {
			t.Fatalf("at %d: %q, %v", before, keys(r.KVs), err)
		}
		_, err = c.Range(ctx, RangeRequest{Key: []byte("/a/1"), Revision: before + 100})
		if !errors.Is(err, ErrFutureRevision) {
			t.Fatalf("future revision: %v", err)
		}
	})
	t.Run("OKPutPrevKV", func(t *testing.T) {
		r, err := c.Put(ctx, PutRequest{Key: []byte("/a/3"), Value: []byte("drei"), PrevKV: true})
		if err != nil || r.PrevKV == nil || string(r.PrevKV.Value) != "three" {
			t.Fatalf("got %+v, %v", r, err)
		}
	})
	t.Run("OKDeleteRange", func(t *testing.T) {
		put(t, c, "/d/1", "x")
		put(t, c, "/d/2", "y")
		r, err := c.DeleteRange(ctx, DeleteRangeRequest{Key: []byte("/d/"), RangeEnd: PrefixEnd([]byte("/d/")), PrevKV: true})
		if err != nil || r.Deleted != 2 || keys(r.PrevKVs) != "/d/1=x /d/2=y" {
			t.Fatalf("got %+v, %v", r, err)
		}
	})
	t.Run("OKBinaryKeys", func(t *testing.T) {
		k := []byte{0, 0xff, '\n', '"'}
		if _, err := c.Put(ctx, PutRequest{Key: k, Value: []byte{0xfe, 0}}); err != nil {
			t.Fatal(err)
		}
		r, err := c.Range(ctx, RangeRequest{Key: k})
		if err != nil || len(r.KVs) != 1 || !bytes.Equal(r.KVs[0].Value, []byte{0xfe, 0}) {
			t.Fatalf("got %+v, %v", r, err)
		}
	})
	t.Run("Txn", func(t *testing.T) {
		cur, err := c.Range(ctx, RangeRequest{Key: []byte("/a/2")})
		if err != nil {
			t.Fatal(err)
		}
		mod := cur.KVs[0].ModRevision
		for _, tc := range []struct {
			name string
			cmp  Compare
			want bool
		}{
			{"ValueEqual", CompareValue([]byte("/a/2"), Equal, []byte("two")), true},
			{"ValueNotEqual", CompareValue([]byte("/a/2"), NotEqual, []byte("two")), false},
			{"VersionAbsent", CompareVersion([]byte("/a/9"), Equal, 0), true},
			{"VersionGreater", CompareVersion([]byte("/a/2"), Greater, 0), true},
			{"CreateRevision", CompareCreateRevision([]byte("/a/2"), Equal, cur.KVs[0].CreateRevision), true},
			{"ModRevisionLess", CompareModRevision([]byte("/a/2"), Less, mod), false},
			{"ModRevisionPrefix", CompareModRevision([]byte("/a/"), Less, cur.Header.Revision+1).WithPrefix(), true},
			{"ModRevisionPrefixStale", CompareModRevision([]byte("/a/"), Less, mod).WithPrefix(), false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r, err := c.Txn(ctx, TxnRequest{
					Compare: []Compare{tc.cmp},
					Success: []Op{{Range: &RangeRequest{Key: []byte("/a/2")}}},
					Failure: []Op{{Range: &RangeRequest{Key: []byte("/a/1")}}},
				})
				if err != nil {
					t.Fatal(err)
				}
				if r.Succeeded != tc.want || len(r.Responses) != 1 || r.Responses[0].Range == nil {
					t.Fatalf("succeeded=%v want %v, %+v", r.Succeeded, tc.want, r)
				}
				want := map[bool]string{true: "/a/2=two", false: "/a/1=uno"}[tc.want]
				if got := keys(r.Responses[0].Range.KVs); got != want {
					t.Fatalf("branch read %q, want %q", got, want)
				}
			})
		}
		t.Run("Writes", func(t *testing.T) {
			r, err := c.Txn(ctx, TxnRequest{
				Compare: []Compare{CompareVersion([]byte("/t/new"), Equal, 0)},
				Success: []Op{
					{Put: &PutRequest{Key: []byte("/t/new"), Value: []byte("v")}},
					{Delete: &DeleteRangeRequest{Key: []byte("/a/3"), PrevKV: true}},
				},
			})
			if err != nil || !r.Succeeded || len(r.Responses) != 2 || r.Responses[0].Put == nil ||
				r.Responses[1].Delete == nil || r.Responses[1].Delete.Deleted != 1 {
				t.Fatalf("got %+v, %v", r, err)
			}
			r, err = c.Txn(ctx, TxnRequest{
				Compare: []Compare{CompareVersion([]byte("/t/new"), Equal, 0)},
				Success: []Op{{Put: &PutRequest{Key: []byte("/t/new"), Value: []byte("again")}}},
			})
			if err != nil || r.Succeeded {
				t.Fatalf("second create succeeded: %+v, %v", r, err)
			}
		})
	})
}

// TestExactLimit is the pattern a store uses for a session limit with no
// lock (LIBRARY-NOTES): read the prefix's keys and the header revision R;
// below the limit, create with Txn If(ModRevision(prefix) < R+1); retry when
// the compare fails. 50 parallel creates on three members store exactly 5.
func TestExactLimit(t *testing.T) {
	cl := etcdtest.Start(t, etcdtest.Options{Members: 3})
	c := newClient(t, cl, Config{})
	ctx := ctxT(t)
	const limit, creators = 5, 50
	for round := 0; round < 2; round++ {
		prefix := []byte(fmt.Sprintf("/limit/%d/", round))
		var wg sync.WaitGroup
		var mu sync.Mutex
		created, tries := 0, 0
		errs := make(chan error, creators)
		for i := 0; i < creators; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				for {
					mu.Lock()
					tries++
					mu.Unlock()
					r, err := c.Range(ctx, RangeRequest{Key: prefix, RangeEnd: PrefixEnd(prefix), KeysOnly: true})
					if err != nil {
						errs <- err
						return
					}
					if len(r.KVs) >= limit {
						return
					}
					key := append(append([]byte(nil), prefix...), fmt.Sprint(i)...)
					tr, err := c.Txn(ctx, TxnRequest{
						Compare: []Compare{CompareModRevision(prefix, Less, r.Header.Revision+1).WithPrefix()},
						Success: []Op{{Put: &PutRequest{Key: key, Value: []byte("s")}}},
					})
					if err != nil {
						errs <- err
						return
					}
					if tr.Succeeded {
						mu.Lock()
						created++
						mu.Unlock()
						return
					}
				}
			}(i)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		r, err := c.Range(ctx, RangeRequest{Key: prefix, RangeEnd: PrefixEnd(prefix), CountOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		if r.Count != limit || created != limit {
			t.Fatalf("round %d: stored %d, created %d, want %d", round, r.Count, created, limit)
		}
		t.Logf("round %d: %d tries for %d creators", round, tries, creators)
	}
}

func TestPrefixEnd(t *testing.T) {
	for _, tc := range []struct{ in, want []byte }{
		{[]byte("/a/"), []byte("/a0")},
		{[]byte("a\xff"), []byte("b")},
		{[]byte("\xff\xff"), []byte{0}},
		{nil, []byte{0}},
	} {
		if got := PrefixEnd(tc.in); !bytes.Equal(got, tc.want) {
			t.Errorf("PrefixEnd(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
