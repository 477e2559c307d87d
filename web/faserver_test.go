package web_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"vmsauth/auth"
	"vmsauth/store"
	"vmsauth/web"
)

// faListener is the forward-auth server on a unix socket, as serve runs it,
// beside the main handler over HTTPS, on one real bbolt file.
type faListener struct {
	sock  string
	main  *httptest.Server
	srv   *web.ForwardAuthServer
	token string // integration token of cam1 (archive-view)
	done  chan error
}

func newFAListener(t *testing.T) *faListener {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "vmsauth.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	svc, err := auth.New(db, auth.Config{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateUser(context.Background(), auth.Root, auth.NewUser{
		Login: "cam1", Password: "password1", APIs: []auth.API{auth.APIIntegration}, Permissions: []string{"archive-view", "cameras-view"},
	}); err != nil {
		t.Fatal(err)
	}
	in, err := svc.Login(context.Background(), auth.LoginRequest{API: auth.APIIntegration, Login: "cam1", Password: "password1"})
	if err != nil {
		t.Fatal(err)
	}
	hs, err := web.NewHandlers(svc, web.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	main := httptest.NewTLSServer(hs.Main)
	t.Cleanup(main.Close)
	sock := filepath.Join(t.TempDir(), "fa.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	l := &faListener{sock: sock, main: main, srv: web.NewForwardAuthServer(hs.ForwardAuth), token: in.Token, done: make(chan error, 1)}
	go func() { l.done <- l.srv.Serve(ln) }()
	t.Cleanup(func() { l.srv.Close() })
	return l
}

func (l *faListener) dial(t *testing.T) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", l.sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// exchange writes raw on c and reads one answer.
func faExchange(t *testing.T, c net.Conn, br *bufio.Reader, raw string) (*http.Response, string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	return faAnswer(t, br, raw)
}

func faAnswer(t *testing.T, br *bufio.Reader, raw string) (*http.Response, string) {
	t.Helper()
	var req *http.Request
	if strings.HasPrefix(raw, "HEAD ") {
		req = &http.Request{Method: http.MethodHead}
	}
	res, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%q: body: %v", raw, err)
	}
	return res, string(b)
}

// faClosed tells whether the server closed c within a while: EOF, or a
// reset when it closed with part of the request unread.
func faClosed(c net.Conn, br *bufio.Reader, within time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(within))
	_, err := br.ReadByte()
	var ne net.Error
	return err == io.EOF || err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// TestForwardAuthServerParity sends the same raw requests to the
// forward-auth server and to the HTTPS listener, and wants the same
// answer, answer by answer: status, headers (but Date, and the
// Content-Length of the 200 that has no body on the forward-auth
// listener) and body.
func TestForwardAuthServerParity(t *testing.T) {
	l := newFAListener(t)
	tok := l.token
	host := "Host: vmsauth\r\n"
	authz := "Authorization: Bearer " + tok + "\r\n"
	cases := []struct{ name, raw string }{
		{"OK", "GET /auth/verify HTTP/1.1\r\n" + host + authz + "\r\n"},
		{"OKPermission", "GET /auth/verify?permission=archive-view HTTP/1.1\r\n" + host + authz + "\r\n"},
		{"OKAPI", "GET /auth/verify?api=integration&permission=cameras-view HTTP/1.1\r\n" + host + authz + "\r\n"},
		{"OKLowerCaseBearer", "GET /auth/verify HTTP/1.1\r\n" + host + "authorization:   bearer  " + tok + "  \r\n\r\n"},
		{"OKEncodedPermission", "GET /auth/verify?permission=archive%2Dview HTTP/1.1\r\n" + host + authz + "\r\n"},
		{"OKEncodedPath", "GET /auth/%76erify HTTP/1.1\r\n" + host + authz + "\r\n"},
		{"OKHTTP10", "GET /auth/verify HTTP/1.0\r\n" + authz + "\r\n"},
		{"OKTwoTokensFirstGood", "GET /auth/verify HTTP/1.1\r\n" + host + authz + "Authorization: Bearer nope\r\n\r\n"},
		{"ErrTwoTokensBadFirst", "GET /auth/verify HTTP/1.1\r\n" + host + "Authorization: Bearer nope\r\n" + authz + "\r\n"},
		{"ErrNoPermission", "GET /auth/verify?permission=users-view HTTP/1.1\r\n" + host + authz + "\r\n"},
		{"ErrEmptyPermission", "GET /auth/verify?permission= HTTP/1.1\r\n" + host + authz + "\r\n"},
		{"ErrTwoPermissions", "GET /auth/verify?permission=archive-view&permission=users-view HTTP/1.1\r\n" + host + authz + "\r\n"},
		{"ErrSamePermissionTwice", "GET /auth/verify?permission=archive-view&permission=archive-view HTTP/1.1\r\n" + host + authz + "\r\n"},
		{"ErrPermissionNoValue", "GET /auth/verify?permission HTTP/1.1\r\n" + host + authz + "\r\n"},
		{"OKUnknownParameter", "GET /auth/verify?x=1&permission=archive-view HTTP/1.1\r\n" + host + authz + "\r\n"},
		{"ErrAPIClient", "GET /auth/verify?api=client HTTP/1.1\r\n" + host + authz + "\r\n"},
		{"ErrAPIUnknown", "GET /auth/verify?api=bogus HTTP/1.1\r\n" + host + authz + "\r\n"},
		{"ErrTwoAPIs", "GET /auth/verify?api=integration&api=integration HTTP/1.1\r\n" + host + authz + "\r\n"},
		{"ErrBadEscape", "GET /auth/verify?permission=%zz HTTP/1.1\r\n" + host + authz + "\r\n"},
		{"ErrSemicolon", "GET /auth/verify?permission=archive-view;x=1 HTTP/1.1\r\n" + host + authz + "\r\n"},
		{"ErrNoToken", "GET /auth/verify HTTP/1.1\r\n" + host + "\r\n"},
		{"ErrBadToken", "GET /auth/verify HTTP/1.1\r\n" + host + "Authorization: Bearer " + tok[:len(tok)-1] + "\r\n\r\n"},
		{"ErrBasic", "GET /auth/verify HTTP/1.1\r\n" + host + "Authorization: Basic " + tok + "\r\n\r\n"},
		{"ErrIntegrationEnvelope", "GET /auth/verify?api=integration HTTP/1.1\r\n" + host + "Authorization: Bearer nope\r\n\r\n"},
		{"ErrHead", "HEAD /auth/verify HTTP/1.1\r\n" + host + authz + "\r\n"},
		{"ErrPost", "POST /auth/verify HTTP/1.1\r\n" + host + authz + "Content-Length: 0\r\n\r\n"},
		{"ErrTrailingSlash", "GET /auth/verify/ HTTP/1.1\r\n" + host + authz + "\r\n"},
		{"ErrUnknownPath", "GET /auth/verifyx HTTP/1.1\r\n" + host + authz + "\r\n"},
		{"Healthz", "GET /healthz HTTP/1.1\r\n" + host + "\r\n"},
		{"HealthzHead", "HEAD /healthz HTTP/1.1\r\n" + host + "\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fc := l.dial(t)
			fres, fbody := faExchange(t, fc, bufio.NewReader(fc), tc.raw)
			mc, err := tls.Dial("tcp", strings.TrimPrefix(l.main.URL, "https://"), &tls.Config{InsecureSkipVerify: true})
			if err != nil {
				t.Fatal(err)
			}
			defer mc.Close()
			mres, mbody := faExchange(t, mc, bufio.NewReader(mc), tc.raw)
			if fres.StatusCode != mres.StatusCode {
				t.Fatalf("forward auth %d %s, HTTPS %d %s", fres.StatusCode, fbody, mres.StatusCode, mbody)
			}
			strip := func(h http.Header) http.Header {
				h = h.Clone()
				h.Del("Date")
				h.Del("Connection")
				return h
			}
			fh, mh := strip(fres.Header), strip(mres.Header)
			if fres.StatusCode == http.StatusOK && strings.Contains(tc.raw, "/auth/") {
				// The one difference: a passing check has no body here.
				if fbody != "" || fh.Get("Content-Length") != "0" || mbody != `{"status":"ok"}` {
					t.Fatalf("200: forward auth %q (%v), HTTPS %q", fbody, fh, mbody)
				}
				fh.Del("Content-Length")
				mh.Del("Content-Length")
				fbody = mbody
				if fh.Get("X-Auth-Login") != "cam1" || !strings.Contains(fh.Get("X-Auth-Permissions"), "archive-view") ||
					fh.Get("X-Auth-Realm") != "integration" || fh.Get("X-Auth-User-Id") == "" {
					t.Fatalf("200 without the user: %v", fh)
				}
			}
			if !equalHeaders(fh, mh) || fbody != mbody {
				t.Fatalf("forward auth:\n%d %v\n%s\nHTTPS:\n%d %v\n%s", fres.StatusCode, fh, fbody, mres.StatusCode, mh, mbody)
			}
			if fres.Header.Get("Date") == "" {
				t.Fatal("no Date")
			}
		})
	}
}

func equalHeaders(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// TestForwardAuthServerFraming: what the server reads and what it refuses,
// over the socket.
func TestForwardAuthServerFraming(t *testing.T) {
	l := newFAListener(t)
	get := "GET /auth/verify?permission=archive-view HTTP/1.1\r\nHost: vmsauth\r\nAuthorization: Bearer " + l.token + "\r\n\r\n"

	t.Run("KeepAlive", func(t *testing.T) {
		c := l.dial(t)
		br := bufio.NewReader(c)
		for range 5 {
			if res, _ := faExchange(t, c, br, get); res.StatusCode != 200 || res.Close {
				t.Fatalf("%d close=%v", res.StatusCode, res.Close)
			}
		}
		// A refusal of the check keeps the connection too.
		if res, _ := faExchange(t, c, br, "GET /auth/verify HTTP/1.1\r\nHost: x\r\n\r\n"); res.StatusCode != 401 || res.Close {
			t.Fatalf("%d close=%v", res.StatusCode, res.Close)
		}
		if res, _ := faExchange(t, c, br, get); res.StatusCode != 200 {
			t.Fatalf("after a 401: %d", res.StatusCode)
		}
	})
	t.Run("Pipelined", func(t *testing.T) {
		c := l.dial(t)
		br := bufio.NewReader(c)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		noPerm := strings.Replace(get, "archive-view", "users-view", 1)
		health := "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
		// One write, four requests, the last in two pieces.
		io.WriteString(c, get+noPerm+health+get[:20])
		io.WriteString(c, get[20:])
		for i, want := range []int{200, 403, 200, 200} {
			res, body := faAnswer(t, br, "")
			if res.StatusCode != want {
				t.Fatalf("answer %d: %d %s, want %d", i, res.StatusCode, body, want)
			}
			if i == 2 && body != `{"status":"ok"}` {
				t.Fatalf("healthz: %s", body)
			}
		}
	})
	t.Run("ConnectionClose", func(t *testing.T) {
		c := l.dial(t)
		br := bufio.NewReader(c)
		res, _ := faExchange(t, c, br, strings.Replace(get, "\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1)+get)
		if res.StatusCode != 200 || !res.Close || !faClosed(c, br, 5*time.Second) {
			t.Fatalf("%d close=%v, or the connection stayed open", res.StatusCode, res.Close)
		}
	})
	t.Run("ElsewhereCloses", func(t *testing.T) {
		// A 404 or 405 ends the connection: no proxy sends those.
		for _, raw := range []string{
			"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
			"DELETE /auth/verify HTTP/1.1\r\nHost: x\r\n\r\n",
			"POST /v1/login_check HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
		} {
			c := l.dial(t)
			br := bufio.NewReader(c)
			res, _ := faExchange(t, c, br, raw+get)
			if res.StatusCode != 404 && res.StatusCode != 405 || !res.Close || !faClosed(c, br, 5*time.Second) {
				t.Fatalf("%q: %d close=%v, or more answers", raw, res.StatusCode, res.Close)
			}
		}
	})
	t.Run("ErrMalformed", func(t *testing.T) {
		for _, raw := range []string{
			"GET /auth/verify HTTP/1.1\nHost: x\n\n",                                     // bare LF
			"GET /auth/verify HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n",         // obsolete folding
			"GET /auth/verify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", // a body of unknown length
			"GET /auth/verify HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
			"GET /auth/verify HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
			"GET /auth/verify HTTP/1.1\r\n\r\n",                       // no Host
			"GET /auth/verify HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", // two
			"GET /auth/verify HTTP/1.1\r\nHost: a b\r\n\r\n",          // not a host
			"GET /auth/verify HTTP/2.0\r\nHost: x\r\n\r\n",
			"GET  /auth/verify HTTP/1.1\r\nHost: x\r\n\r\n",
			"GET http://x/auth/verify HTTP/1.1\r\nHost: x\r\n\r\n", // absolute form
			"GET /auth/verify#x HTTP/1.1\r\nHost: x\r\n\r\n",
			"G(T /auth/verify HTTP/1.1\r\nHost: x\r\n\r\n",
			"GET /auth/verify HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n",
			"GET /auth/verify HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
			"\r\nGET /auth/verify HTTP/1.1\r\nHost: x\r\n\r\n",
			"GET /auth/verify HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X: 1\r\n", 101) + "\r\n",
		} {
			c := l.dial(t)
			br := bufio.NewReader(c)
			res, body := faExchange(t, c, br, raw+get)
			if res.StatusCode != 400 || body != "400 Bad Request" || !res.Close || !faClosed(c, br, 5*time.Second) {
				t.Fatalf("%q: %d %q close=%v, or more answers", raw, res.StatusCode, body, res.Close)
			}
		}
	})
	t.Run("ErrHeader64KiB", func(t *testing.T) {
		c := l.dial(t)
		br := bufio.NewReader(c)
		raw := "GET /auth/verify HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 64<<10) + "\r\n\r\n"
		c.SetDeadline(time.Now().Add(10 * time.Second))
		go io.WriteString(c, raw) // the server stops reading at 16 KiB
		res, _ := faAnswer(t, br, raw)
		if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge || !res.Close || !faClosed(c, br, 5*time.Second) {
			t.Fatalf("%d close=%v", res.StatusCode, res.Close)
		}
	})
	t.Run("SlowHeader", func(t *testing.T) {
		// A request trickling in a byte a second (slowloris) is cut off
		// about 5 s after its first byte, whatever it sends.
		c := l.dial(t)
		br := bufio.NewReader(c)
		io.WriteString(c, "GET /auth/verify HTTP/1.1\r\n")
		start := time.Now()
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(500 * time.Millisecond):
					if _, err := io.WriteString(c, "X"); err != nil {
						return
					}
				}
			}
		}()
		if !faClosed(c, br, 20*time.Second) {
			t.Fatal("a slow request kept its connection 20 s")
		}
		if d := time.Since(start); d < 4*time.Second {
			t.Fatalf("closed after %v: sooner than the header timeout", d)
		}
	})
	t.Run("DroppedMidway", func(t *testing.T) {
		c := l.dial(t)
		io.WriteString(c, get[:30])
		c.Close()
		c = l.dial(t)
		if res, _ := faExchange(t, c, bufio.NewReader(c), get); res.StatusCode != 200 {
			t.Fatalf("after a dropped connection: %d", res.StatusCode)
		}
	})
}

// TestForwardAuthServerShutdown: Shutdown closes idle connections, lets a
// request that is arriving finish, and stops Serve.
func TestForwardAuthServerShutdown(t *testing.T) {
	l := newFAListener(t)
	get := "GET /auth/verify HTTP/1.1\r\nHost: vmsauth\r\nAuthorization: Bearer " + l.token + "\r\n\r\n"
	idle := l.dial(t)
	idleR := bufio.NewReader(idle)
	faExchange(t, idle, idleR, get)
	busy := l.dial(t)
	busyR := bufio.NewReader(busy)
	io.WriteString(busy, get[:25])
	time.Sleep(100 * time.Millisecond) // let the server read the first part
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- l.srv.Shutdown(ctx) }()
	if !faClosed(idle, idleR, 5*time.Second) {
		t.Fatal("an idle connection stayed open")
	}
	io.WriteString(busy, get[25:])
	res, _ := faAnswer(t, busyR, get)
	if res.StatusCode != 200 || !faClosed(busy, busyR, 5*time.Second) {
		t.Fatalf("request in flight: %d, or its connection stayed open", res.StatusCode)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	if err := <-l.done; err != http.ErrServerClosed {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := net.Dial("unix", l.sock); err == nil {
		t.Fatal("the socket still answers")
	}
}

// TestForwardAuthServerMetrics: the checks the server answers itself count
// in /metrics as the router's did, under the route's pattern.
func TestForwardAuthServerMetrics(t *testing.T) {
	l := newFAListener(t)
	client := l.main.Client()
	count := func() string {
		t.Helper()
		res, err := client.Get(l.main.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		for line := range strings.SplitSeq(string(b), "\n") {
			if strings.HasPrefix(line, `vmsauth_http_requests_total{method="GET",route="/auth/verify",code="200"} `) {
				return strings.Fields(line)[1]
			}
		}
		return "0"
	}
	before := count()
	c := l.dial(t)
	br := bufio.NewReader(c)
	get := "GET /auth/verify HTTP/1.1\r\nHost: vmsauth\r\nAuthorization: Bearer " + l.token + "\r\n\r\n"
	for range 3 {
		faExchange(t, c, br, get)
	}
	if after := count(); before != "0" || after != "3" {
		t.Fatalf("GET /auth/verify 200: %s before, %s after 3 checks", before, after)
	}
}
