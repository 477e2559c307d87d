package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"vmsauth/etcd/etcdtest"
)

// fakeMember is an HTTP server on loopback standing for one member whose
// answer a test chooses; it counts the requests it got.
type fakeMember struct {
	*httptest.Server
	hits atomic.Int64
}

func newFake(t *testing.T, h http.HandlerFunc) *fakeMember {
	f := &fakeMember{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

// hang reads the request, so the server sees the client go away, and
// answers nothing.
func hang(w http.ResponseWriter, r *http.Request) {
	io.ReadAll(r.Body)
	<-r.Context().Done()
}

func answer(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(body)) }
}

func etcdError(status, code int, msg string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]any{"error": msg, "message": msg, "code": code})
	}
}

// deadEndpoint is a loopback address nothing listens on.
func deadEndpoint(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// TestRotationPolicy checks what the client sends where when a member fails:
// reads move on; writes move on only when they were certainly not applied.
func TestRotationPolicy(t *testing.T) {
	const okRange = `{"header":{"revision":"7"},"kvs":[{"key":"YQ==","value":"Yg==","mod_revision":"7"}],"count":"1"}`
	const okPut = `{"header":{"revision":"8"}}`
	for _, tc := range []struct {
		name      string
		first     http.HandlerFunc // nil: nothing listens
		write     bool
		kinds     []error // nil: the second member answers
		nextFirst bool    // the request was sent to the second member
	}{
		{"OKReadAfterTimeout", hang, false, nil, true},
		{"OKReadAfterNoLeader", etcdError(503, 14, "etcdserver: no leader"), false, nil, true},
		{"OKReadAfterRefusedConnection", nil, false, nil, true},
		{"OKReadAfterProxy502", etcdError(502, 0, ""), false, nil, true},
		{"OKWriteAfterRefusedConnection", nil, true, nil, true},
		{"OKWriteAfterNoLeader", etcdError(503, 14, "etcdserver: no leader"), true, nil, true},
		{"ErrMaybeAppliedWriteTimeout", hang, true, []error{ErrMaybeApplied, ErrTimeout}, false},
		{"ErrMaybeAppliedEtcdTimeout", etcdError(503, 14, "etcdserver: request timed out"), true, []error{ErrMaybeApplied, ErrTimeout}, false},
		{"OKWriteAfterTooManyRequests", etcdError(503, 14, "etcdserver: too many requests"), true, nil, true},
		{"ErrMaybeAppliedServerStopped", etcdError(503, 14, "etcdserver: server stopped"), true, []error{ErrMaybeApplied}, false},
		{"ErrMaybeAppliedProxy502", etcdError(502, 0, ""), true, []error{ErrMaybeApplied}, false},
		{"ErrPermissionDeniedNoRetry", etcdError(403, 7, "etcdserver: permission denied"), false, []error{ErrPermissionDenied}, false},
		{"ErrCompactedNoRetry", etcdError(400, 11, "etcdserver: mvcc: required revision has been compacted"), false, []error{ErrCompacted}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := okRange
			if tc.write {
				body = okPut
			}
			second := newFake(t, answer(body))
			first := deadEndpoint(t)
			if tc.first != nil {
				first = newFake(t, tc.first).URL
			}
			c, err := New(Config{Endpoints: []string{first, second.URL}, Timeout: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx := context.Background()
			if tc.write {
				_, err = c.Put(ctx, PutRequest{Key: []byte("a"), Value: []byte("b")})
			} else {
				var r *RangeResponse
				r, err = c.Range(ctx, RangeRequest{Key: []byte("a")})
				if err == nil && (r.Header.Revision != 7 || r.Count != 1 || keys(r.KVs) != "a=b" || r.KVs[0].ModRevision != 7) {
					t.Fatalf("decoded %+v", r)
				}
			}
			for _, k := range tc.kinds {
				if !errors.Is(err, k) {
					t.Errorf("got %v, want it to match %v", err, k)
				}
			}
			if tc.kinds == nil && err != nil {
				t.Fatal(err)
			}
			if got := second.hits.Load() > 0; got != tc.nextFirst {
				t.Fatalf("second member asked: %v, want %v (err %v)", got, tc.nextFirst, err)
			}
			// A failed member is not asked first by the next request.
			if tc.nextFirst || errors.Is(err, ErrMaybeApplied) {
				if c.cur.Load() != 1 {
					t.Fatalf("next request starts at endpoint %d", c.cur.Load())
				}
			}
		})
	}
}

// TestDecodeNumbers: int64 fields come as strings from the gateway; a bare
// number or null must read the same.
func TestDecodeNumbers(t *testing.T) {
	for _, in := range []string{
		`{"header":{"revision":"9","member_id":"13668033151171901709"},"kvs":[{"key":"YQ==","create_revision":"3","mod_revision":"9","version":"2","lease":"4111120320993400078"}],"count":"1"}`,
		`{"header":{"revision":9,"member_id":13668033151171901709},"kvs":[{"key":"YQ==","create_revision":3,"mod_revision":9,"version":2,"lease":4111120320993400078}],"count":1,"more":false}`,
	} {
		var r RangeResponse
		if err := json.Unmarshal([]byte(in), &r); err != nil {
			t.Fatal(err)
		}
		kv := r.KVs[0]
		if r.Header.Revision != 9 || r.Header.MemberID != 13668033151171901709 || r.Count != 1 ||
			kv.CreateRevision != 3 || kv.ModRevision != 9 || kv.Version != 2 || kv.Lease != 4111120320993400078 {
			t.Fatalf("%s: decoded %+v", in, r)
		}
	}
	var kv KeyValue
	if err := json.Unmarshal([]byte(`{"key":"YQ==","version":null}`), &kv); err != nil || kv.Version != 0 {
		t.Fatalf("null: %+v, %v", kv, err)
	}
	for _, bad := range []string{`{"version":"x"}`, `{"version":1.5}`, `{"version":true}`} {
		if err := json.Unmarshal([]byte(bad), &kv); err == nil {
			t.Errorf("%s decoded", bad)
		}
	}
}

// TestTLS reaches a cluster that wants a client certificate, with the
// configuration TLSConfig reads from files; without the certificate the
// member refuses.
func TestTLS(t *testing.T) {
	cl := etcdtest.Start(t, etcdtest.Options{TLS: true})
	tc, err := TLSConfig(cl.CAFile, cl.CertFile, cl.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, cl, Config{TLS: tc})
	put(t, c, "/tls", "ok")
	st, err := c.StatusOf(ctxT(t), cl.Endpoints()[0])
	if err != nil || st.Leader == 0 {
		t.Fatalf("status over TLS: %+v, %v", st, err)
	}

	noCert, err := TLSConfig(cl.CAFile, "", "")
	if err != nil {
		t.Fatal(err)
	}
	c2 := newClient(t, cl, Config{TLS: noCert})
	if _, err := c2.Range(ctxT(t), RangeRequest{Key: []byte("/tls")}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("without a client certificate: %v, want ErrUnavailable", err)
	}
	if _, err := New(Config{Endpoints: cl.Endpoints()}); err == nil {
		t.Fatal("an https endpoint without TLS configuration was accepted")
	}
	if _, err := TLSConfig(cl.CAFile, cl.CertFile, ""); err == nil {
		t.Fatal("a certificate without its key was accepted")
	}
}
