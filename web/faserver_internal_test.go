package web

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"vmsauth/auth"
	"vmsauth/store"
)

// faTest is a forward-auth handler on a real bbolt file, with a live
// integration token of a user who has archive-view only.
type faTest struct {
	fa    *ForwardAuth
	token string
	logs  *bytes.Buffer
}

func newFATest(tb testing.TB) *faTest {
	tb.Helper()
	db, err := store.Open(filepath.Join(tb.TempDir(), "vmsauth.db"), store.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	svc, err := auth.New(db, auth.Config{BcryptCost: bcrypt.MinCost})
	if err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	if _, err := svc.CreateUser(ctx, auth.Root, auth.NewUser{
		Login: "cam1", Password: "password1", APIs: []auth.API{auth.APIIntegration}, Permissions: []string{"archive-view"},
	}); err != nil {
		tb.Fatal(err)
	}
	in, err := svc.Login(ctx, auth.LoginRequest{API: auth.APIIntegration, Login: "cam1", Password: "password1"})
	if err != nil {
		tb.Fatal(err)
	}
	logs := &bytes.Buffer{}
	hs, err := NewHandlers(svc, Options{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		tb.Fatal(err)
	}
	return &faTest{fa: hs.ForwardAuth, token: in.Token, logs: logs}
}

// memConn is a connection whose peer sent in and then closed its side:
// serve runs to the end of in without a socket or a goroutine.
type memConn struct {
	in  *bytes.Reader
	out bytes.Buffer
}

func (c *memConn) Read(b []byte) (int, error)       { return c.in.Read(b) }
func (c *memConn) Write(b []byte) (int, error)      { return c.out.Write(b) }
func (c *memConn) Close() error                     { return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.UnixAddr{Name: "fa.sock", Net: "unix"} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.UnixAddr{Name: "@", Net: "unix"} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// serveBytes serves one connection that sends in, and returns what the
// server wrote.
func (ft *faTest) serveBytes(in []byte) []byte {
	s := NewForwardAuthServer(ft.fa)
	c := &memConn{in: bytes.NewReader(in)}
	fc := &faConn{srv: s, c: c}
	s.conns[fc] = struct{}{}
	fc.serve()
	return c.out.Bytes()
}

// FuzzForwardAuthConn sends any bytes to the forward-auth server as one
// connection. Whatever comes in, the server must not panic or hang, must
// answer with well-formed HTTP/1.1 answers only, nothing after one that
// closes the connection, and must give a 200 with the user's X-Auth-*
// only to a request that net/http reads, with its own parser, as a GET of
// /auth/verify carrying the token and asking no permission but
// archive-view.
func FuzzForwardAuthConn(f *testing.F) {
	ft := newFATest(f)
	tok := ft.token
	get := "GET /auth/verify?permission=archive-view HTTP/1.1\r\nHost: vmsauth\r\nAuthorization: Bearer " + tok + "\r\n\r\n"
	for _, seed := range []string{
		get,
		get + get + get,
		"GET /auth/verify HTTP/1.1\r\nHost: vmsauth\r\nAuthorization: Bearer " + tok + "\r\nConnection: close\r\n\r\n" + get,
		"GET /auth/verify?permission=users-view HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tok + "\r\n\r\n" + get,
		"GET /auth/verify?permission=archive-view&permission=users-view HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tok + "\r\n\r\n",
		"GET /auth/verify?api=integration&permission=archive-view HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tok + "\r\n\r\n",
		"GET /auth/verify?permission=%61rchive-view HTTP/1.1\r\nHost: x\r\nAuthorization: bearer  " + tok + " \r\n\r\n",
		"GET /auth/%76erify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tok + "\r\n\r\n",
		"GET /auth/verify HTTP/1.0\r\nAuthorization: Bearer " + tok + "\r\n\r\n",
		"HEAD /auth/verify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tok + "\r\n\r\n",
		"POST /auth/verify HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nAuthorization: Bearer " + tok + "\r\n\r\nhello" + get,
		"GET /auth/verify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nAuthorization: Bearer " + tok + "\r\n\r\n0\r\n\r\n",
		"GET /auth/verify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tok + "\r\nAuthorization: Bearer x\r\n\r\n",
		"GET /auth/verify HTTP/1.1\nHost: x\nAuthorization: Bearer " + tok + "\n\n",
		"GET /auth/verify HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\nAuthorization: Bearer " + tok + "\r\n\r\n",
		"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
		"\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /auth/verify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tok[:10],
		"GET http://x/auth/verify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tok + "\r\n\r\n",
		"GET /auth/verify HTTP/1.1\r\nHost: a\r\nHost: b\r\nAuthorization: Bearer " + tok + "\r\n\r\n",
		"GET /auth/verify HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("a", 17000) + "\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		ft.logs.Reset()
		out := ft.serveBytes(in)
		if strings.Contains(ft.logs.String(), "panic") {
			t.Fatalf("panic serving %q:\n%s", in, ft.logs)
		}
		answers := bufio.NewReaderSize(bytes.NewReader(out), 64<<10)
		requests := bufio.NewReader(bytes.NewReader(in))
		for i := 0; ; i++ {
			if _, err := answers.Peek(1); err == io.EOF {
				return
			}
			// net/http reads the request this answers; a plain 400 or
			// 431 is for a request the server would not read.
			req, rerr := http.ReadRequest(requests)
			if rerr == nil {
				io.Copy(io.Discard, req.Body)
			}
			// A HEAD's answer has no body, but a plain refusal is for a
			// request the server did not read, so it has one.
			head, _ := answers.Peek(answers.Buffered())
			head, _, _ = bytes.Cut(head, []byte("\r\n\r\n"))
			var forReq *http.Request
			if rerr == nil && req.Method == http.MethodHead && !bytes.Contains(head, []byte("\r\nContent-Type: text/plain")) {
				forReq = req
			}
			res, err := http.ReadResponse(answers, forReq)
			if err != nil {
				t.Fatalf("answer %d is not HTTP: %v\nin %q\nout %q", i, err, in, out)
			}
			body, err := io.ReadAll(res.Body)
			if err != nil {
				t.Fatalf("answer %d: body: %v\nout %q", i, err, out)
			}
			if res.ProtoMajor != 1 || res.ProtoMinor != 1 {
				t.Fatalf("answer %d: %s", i, res.Proto)
			}
			if res.Header.Get("X-Auth-Login") != "" || res.Header.Get("X-Auth-User-Id") != "" {
				if res.StatusCode != 200 || rerr != nil || req.Method != "GET" || req.URL.Path != "/auth/verify" ||
					bearerToken(req.Header.Get("Authorization")) != tok || res.Header.Get("X-Auth-Login") != "cam1" {
					t.Fatalf("answer %d: %d for the user to %v (%v)\nin %q\nout %q", i, res.StatusCode, req, rerr, in, out)
				}
				if q := req.URL.Query(); len(q["permission"]) > 1 || len(q["permission"]) == 1 && q.Get("permission") != "archive-view" {
					t.Fatalf("answer %d: 200 to %q", i, req.URL.RawQuery)
				}
				if len(body) != 0 {
					t.Fatalf("answer %d: a 200 with a body %q", i, body)
				}
			}
			if res.Close {
				if rest, _ := io.ReadAll(answers); len(rest) > 0 {
					t.Fatalf("answer %d closes the connection, yet more follows: %q", i, rest)
				}
				return
			}
			if rerr != nil {
				t.Fatalf("answer %d: %d kept the connection after a request net/http cannot read (%v)\nin %q\nout %q",
					i, res.StatusCode, rerr, in, out)
			}
		}
	})
}

// BenchmarkForwardAuthConn is nginx's check as the forward-auth server
// reads and answers it, parsing and answer included, without a socket
// (pipelined on one connection): what vmsauth spends per check besides
// the system calls and the scheduler.
//
//	go test -run '^$' -bench ForwardAuthConn -benchmem ./web/
func BenchmarkForwardAuthConn(b *testing.B) {
	ft := newFATest(b)
	// As nginx sends it (proxy_pass to an upstream, HTTP/1.1).
	req := []byte("GET /auth/verify?permission=archive-view HTTP/1.1\r\nHost: vmsauth\r\n" +
		"User-Agent: wrk\r\nAccept: */*\r\nAuthorization: Bearer " + ft.token + "\r\n\r\n")
	const batch = 1000
	in := bytes.Repeat(req, batch)
	if out := ft.serveBytes(req); !bytes.HasPrefix(out, []byte("HTTP/1.1 200 OK\r\n")) || !bytes.Contains(out, []byte("X-Auth-Login: cam1\r\n")) {
		b.Fatalf("%s", out)
	}
	s := NewForwardAuthServer(ft.fa)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		c := &memConn{in: bytes.NewReader(in)}
		c.out.Grow(400 * batch)
		fc := &faConn{srv: s, c: c}
		s.conns[fc] = struct{}{}
		fc.serve()
	}
}
