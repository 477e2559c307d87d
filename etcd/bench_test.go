package etcd

import (
	"context"
	"testing"

	"vmsauth/etcd/etcdtest"
)

// Round trips to a one-member cluster on loopback, one at a time: the cost
// of the JSON API and this client per request (`go test -run '^$' -bench .
// ./etcd/`).
func BenchmarkRange(b *testing.B) {
	cl := etcdtest.Start(b, etcdtest.Options{})
	c := newClient(b, cl, Config{})
	put(b, c, "/bench/k", "a value of some thirty bytes..")
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		req  RangeRequest
	}{
		{"Linearizable", RangeRequest{Key: []byte("/bench/k")}},
		{"Serializable", RangeRequest{Key: []byte("/bench/k"), Serializable: true}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := c.Range(ctx, bc.req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkTxn is the exact-limit write: a compare on a prefix's revisions
// and a put, committed (one fsync) each time.
func BenchmarkTxn(b *testing.B) {
	cl := etcdtest.Start(b, etcdtest.Options{})
	c := newClient(b, cl, Config{})
	ctx := context.Background()
	prefix := []byte("/bench/sessions/")
	for b.Loop() {
		r, err := c.Txn(ctx, TxnRequest{
			Compare: []Compare{CompareModRevision(prefix, Less, 1<<62).WithPrefix()},
			Success: []Op{{Put: &PutRequest{Key: append(prefix, 'k'), Value: []byte("v")}}},
		})
		if err != nil || !r.Succeeded {
			b.Fatal(r, err)
		}
	}
}
