package web_test

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"vmsauth/web"
)

// Finding 9 of issue 13: nothing capped the connections of one client
// address; 2000 idle keep-alive TLS connections from one address took
// 66 MB. These tests serve the real router on a listener capped to 3 per
// address, with loopback not exempt (as it is in serve), and connect from
// several loopback addresses.

// capped serves e's router on a loopback listener limited by lim.
func capped(t *testing.T, e *env, lim web.ConnLimit) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := web.NewServer("", e.Handler)
	lim.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	go srv.Serve(web.LimitConns(ln, lim))
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// dialFrom connects to addr from the loopback address from.
func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// healthz asks for /healthz on c, keeping it open, and returns the status,
// or an error when the server closed the connection instead.
func healthz(c net.Conn) (int, error) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: vmsauth\r\n\r\n"); err != nil {
		return 0, err
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode, nil
}

func TestConnsPerIP(t *testing.T) {
	e := newEnv(t)
	addr := capped(t, e, web.ConnLimit{Max: 3})
	var held []net.Conn
	for i := range 3 {
		c := dialFrom(t, "127.0.0.5", addr)
		if st, err := healthz(c); err != nil || st != http.StatusOK {
			t.Fatalf("connection %d: %d %v", i+1, st, err)
		}
		held = append(held, c)
	}
	// The fourth from the same address is closed at once.
	extra := dialFrom(t, "127.0.0.5", addr)
	if st, err := healthz(extra); err == nil {
		t.Fatalf("a 4th connection from one address was served: %d", st)
	} else if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !isNetError(err) {
		t.Fatalf("a 4th connection: %v, want it closed by the server", err)
	}
	// Another address is not affected.
	if st, err := healthz(dialFrom(t, "127.0.0.6", addr)); err != nil || st != http.StatusOK {
		t.Fatalf("another address: %d %v", st, err)
	}
	// A connection closed gives its place back.
	held[0].Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := healthz(dialFrom(t, "127.0.0.5", addr))
		if err == nil && st == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no place after a close: %d %v", st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func isNetError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op)
}

func TestConnsExempt(t *testing.T) {
	e := newEnv(t)
	addr := capped(t, e, web.ConnLimit{Max: 2, Exempt: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/24")}})
	for i := range 5 {
		c := dialFrom(t, "127.0.0.7", addr)
		if st, err := healthz(c); err != nil || st != http.StatusOK {
			t.Fatalf("exempt connection %d: %d %v", i+1, st, err)
		}
	}
	for i := range 3 {
		st, err := healthz(dialFrom(t, "127.0.1.7", addr))
		if ok := err == nil && st == http.StatusOK; ok != (i < 2) {
			t.Fatalf("connection %d from an address outside the exemption: %d %v", i+1, st, err)
		}
	}
}

func TestConnsNoCap(t *testing.T) {
	e := newEnv(t)
	addr := capped(t, e, web.ConnLimit{Max: 0})
	for i := range 10 {
		if st, err := healthz(dialFrom(t, "127.0.0.8", addr)); err != nil || st != http.StatusOK {
			t.Fatalf("connection %d with no cap: %d %v", i+1, st, err)
		}
	}
}
