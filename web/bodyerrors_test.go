package web_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"vmsauth/auth"
	"vmsauth/internal/testkit"
	"vmsauth/web"
)

// Finding 7 of issue 13: bodies the client cut short or let stall, and
// clients that gave up while their login waited for bcrypt, were answered
// 500 and logged at ERROR, as if the box were at fault. These tests speak
// raw TCP to a real server.

// serveReal serves e's router with web.NewServer's settings, readTimeout
// aside, on a loopback port, and returns its address.
func serveReal(t *testing.T, e *env, readTimeout time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := web.NewServer("", e.Handler)
	if readTimeout > 0 {
		srv.ReadTimeout = readTimeout
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// rawRequest opens a connection and sends a POST of path whose headers
// announce a body of 200 bytes, followed by only the given part of it.
func rawRequest(t *testing.T, addr, path, part string) *net.TCPConn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: vmsauth\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n%s", path, part)
	return conn.(*net.TCPConn)
}

// readAnswer reads one HTTP answer from conn.
func readAnswer(t *testing.T, conn net.Conn) response {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{Status: res.StatusCode, Header: res.Header, Body: b}
}

// bodyPaths are the three login APIs and the field each names the login by.
var bodyPaths = []struct{ name, path, field string }{
	{"Client", "/api/v1/token", "login"},
	{"Admin", "/api/admin/v1/auth/token", "login"},
	{"Integration", "/v1/login_check", "username"},
}

func wantBodyError(t *testing.T, r response, integration bool, status int, laravel, code string) {
	t.Helper()
	if integration {
		wantIntegrationError(t, r, status, status, code)
	} else {
		wantMessage(t, r, status, laravel)
	}
}

func wantNoErrorLog(t *testing.T, log *testkit.LogBuffer) {
	t.Helper()
	if strings.Contains(log.String(), "level=ERROR") {
		t.Fatalf("a client's doing logged as an error:\n%s", log)
	}
}

func TestBodyCutShort(t *testing.T) {
	var log testkit.LogBuffer
	e := newEnv(t, withLog(&log))
	addr := serveReal(t, e, 0)
	for _, p := range bodyPaths {
		t.Run(p.name, func(t *testing.T) {
			conn := rawRequest(t, addr, p.path, `{"`+p.field+`":"alice","pass`)
			conn.CloseWrite() // 200 bytes announced, 30 sent
			r := readAnswer(t, conn)
			wantBodyError(t, r, p.name == "Integration", http.StatusBadRequest,
				"The request body could not be read.", "Request body could not be read.")
			wantNoErrorLog(t, &log)
		})
	}
}

func TestBodyStalled(t *testing.T) {
	var log testkit.LogBuffer
	e := newEnv(t, withLog(&log))
	addr := serveReal(t, e, 300*time.Millisecond)
	for _, p := range bodyPaths {
		t.Run(p.name, func(t *testing.T) {
			conn := rawRequest(t, addr, p.path, `{"`+p.field+`":"alice"`)
			// The rest never comes: the server's ReadTimeout ends the wait.
			r := readAnswer(t, conn)
			wantBodyError(t, r, p.name == "Integration", http.StatusRequestTimeout,
				"The request body took too long to arrive.", "Request body took too long to arrive.")
			wantNoErrorLog(t, &log)
		})
	}
}

// TestClientGivesUpWaitingForBcrypt: with the one bcrypt worker kept busy,
// a login queues for it; its client closes the connection. The request's
// context ends, and that is the client's doing: no 500, no ERROR line.
func TestClientGivesUpWaitingForBcrypt(t *testing.T) {
	var log testkit.LogBuffer
	oneWorker := func(a *auth.Config, _ *web.Options) { a.HashWorkers = 1 }
	e := newEnv(t, withLog(&log), oneWorker)
	// An imported hash of cost 12 (about 250 ms to check, many times that
	// under -race) keeps the worker busy; the env's own cost stays low.
	if _, err := e.Svc.CreateUser(context.Background(), auth.Root, auth.NewUser{Login: "slow", APIs: clientAPI,
		PasswordHash: "$2a$12$VbTjfqmzXsrSIUTwGBlO6Oy9Ct.DzPqfSLtZznODBMXhI6Pnt81oi"}); err != nil {
		t.Fatal(err)
	}
	addr := serveReal(t, e, 0)
	login := `{"login":"slow","password":"wrong-password"}`
	busy := make(chan response, 1)
	go func() {
		r, err := e.send("POST", "/api/v1/token", login)
		if err != nil {
			t.Error(err)
		}
		busy <- r
	}()
	time.Sleep(50 * time.Millisecond) // the first login now holds the worker
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /api/v1/token HTTP/1.1\r\nHost: vmsauth\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(login), login)
	time.Sleep(50 * time.Millisecond) // read, and queued behind the first
	conn.Close()

	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(log.String(), "client gone before its answer") {
		wantNoErrorLog(t, &log)
		if time.Now().After(deadline) {
			t.Fatalf("no sign of the client that left:\n%s", log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	wantStatus(t, <-busy, http.StatusUnprocessableEntity)
	wantNoErrorLog(t, &log)
	if !strings.Contains(log.String(), `reason="client gave up"`) {
		t.Fatalf("the audit reason of the login that left:\n%s", log.String())
	}
}
