package main

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"vmsauth/internal/testkit"
)

func TestForwardAuthConfig(t *testing.T) {
	for _, tt := range []struct {
		name          string
		listen, group string
		want          string // "" accepts
	}{
		{"OKLoopback", "127.0.0.1:9001", "", ""},
		{"OKLoopbackNet", "127.8.9.10:9001", "", ""},
		{"OKIPv6", "[::1]:9001", "", ""},
		{"OKUnix", "unix:/run/vmsauth/fa.sock", "", ""},
		{"OKUnixGroupID", "unix:/run/vmsauth/fa.sock", "33", ""},
		{"OKUnixGroupName", "unix:/run/vmsauth/fa.sock", "root", ""},
		{"ErrAllInterfaces", ":9001", "", "--forward-auth-listen"},
		{"ErrAnyAddress", "0.0.0.0:9001", "", "must be loopback"},
		{"ErrLAN", "192.168.1.10:9001", "", "must be loopback"},
		{"ErrIPv6Any", "[::]:9001", "", "must be loopback"},
		{"ErrName", "localhost:9001", "", "must be loopback"},
		{"ErrNoPort", "127.0.0.1", "", "--forward-auth-listen"},
		{"ErrEmptyPort", "127.0.0.1:", "", "--forward-auth-listen"},
		{"ErrUnixNoPath", "unix:", "", "--forward-auth-listen"},
		{"ErrGroupOnTCP", "127.0.0.1:9001", "root", "--forward-auth-group"},
		{"ErrGroupAlone", "", "root", "--forward-auth-group"},
		{"ErrUnknownGroup", "unix:/x.sock", "no-such-group-here", "--forward-auth-group"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"serve", "--print-config", "--forward-auth-listen", tt.listen, "--forward-auth-group", tt.group}
			code, out, errOut := cli(t, envOf(), "", args...)
			if tt.want == "" {
				if code != 0 {
					t.Fatalf("exit %d: %s", code, errOut)
				}
				if !strings.Contains(out, tt.listen) {
					t.Errorf("print-config lacks %q:\n%s", tt.listen, out)
				}
				return
			}
			if code == 0 || !strings.Contains(errOut, tt.want) {
				t.Fatalf("exit %d, output %q; want an error with %q", code, out+errOut, tt.want)
			}
		})
	}
	// The environment variable is read like every other option.
	code, _, errOut := cli(t, envOf("VMSAUTH_FORWARD_AUTH_LISTEN", "10.0.0.1:9001"), "", "serve", "--print-config")
	if code == 0 || !strings.Contains(errOut, "--forward-auth-listen") {
		t.Fatalf("VMSAUTH_FORWARD_AUTH_LISTEN=10.0.0.1:9001: exit %d, %q", code, errOut)
	}
}

var forwardAuthRE = regexp.MustCompile(`msg="forward auth listening" addr=(\S+)`)

// loggedForwardAuth returns the forward-auth address serve logged (before
// the line startServe waits for).
func loggedForwardAuth(t *testing.T, out *testkit.LogBuffer) string {
	t.Helper()
	m := forwardAuthRE.FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("serve did not log its forward-auth listener:\n%s", out)
	}
	return m[1]
}

// unixClient talks HTTP over the socket at path.
func unixClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
}

// get answers the status and body of GET url with an optional token.
func get(t *testing.T, c *http.Client, url, token string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b), res.Header
}

// integrationToken logs login in over the HTTPS listener at base.
func integrationToken(t *testing.T, base, login, password string) string {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	code, body := postJSON(t, client, base+"/v1/login_check", `{"username":"`+login+`","password":"`+password+`"}`)
	tok, _ := body["token"].(string)
	if code != http.StatusOK || tok == "" {
		t.Fatalf("login %s: %d %v", login, code, body)
	}
	return tok
}

// TestForwardAuthSocket runs serve with the forward-auth listener on a unix
// socket in the data directory, where a crash left a stale socket.
func TestForwardAuthSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "forward-auth.sock")
	// A socket left behind by a crash: bound, then closed without unlink.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	// Registered before serve starts, so it runs after serve has stopped.
	t.Cleanup(func() {
		if _, err := os.Lstat(sock); !os.IsNotExist(err) {
			t.Errorf("the socket outlived serve: %v", err)
		}
	})
	getenv := envOf("VMSAUTH_DATA", dir, "VMSAUTH_BCRYPT_COST", "4", "VMSAUTH_ADMIN_PASSWORD", "admin-password")
	args := []string{"--captcha=false", "--forward-auth-listen", "unix:" + sock}
	wantGID := -1
	if os.Geteuid() == 0 {
		args = append(args, "--forward-auth-group", "65534")
		wantGID = 65534
	}
	base, out := startServe(t, getenv, args...)
	if got := loggedForwardAuth(t, out); got != "unix:"+sock {
		t.Fatalf("forward auth at %s, want unix:%s", got, sock)
	}

	fi, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o660 || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("socket mode %v, want a socket with 0660", fi.Mode())
	}
	if wantGID >= 0 && int(st.Gid) != wantGID {
		t.Errorf("socket group %d, want %d", st.Gid, wantGID)
	}
	if di, _ := os.Stat(dir); di.Mode().Perm() != 0o710 {
		t.Errorf("data directory mode %v, want 0710 (the group may reach the socket, not list the files)", di.Mode().Perm())
	}

	tok := integrationToken(t, base, "admin", "admin-password")
	c := unixClient(sock)
	// A 200 without a body, so that nginx keeps the connection (see
	// TestForwardAuthNginx/KeepAlive); refusals keep theirs.
	if code, body, h := get(t, c, "http://vmsauth/auth/verify?permission=users-view", tok); code != 200 ||
		h.Get("X-Auth-Login") != "admin" || body != "" || h.Get("Content-Length") != "0" {
		t.Errorf("verify with a good token: %d, X-Auth-Login %q, body %q, Content-Length %q", code, h.Get("X-Auth-Login"), body, h.Get("Content-Length"))
	}
	if code, body, _ := get(t, c, "http://vmsauth/auth/verify", ""); code != 401 || !strings.Contains(body, "Unauthenticated") {
		t.Errorf("verify without a token: %d %s", code, body)
	}
	if code, body, _ := get(t, c, "http://vmsauth/healthz", ""); code != 200 || body != `{"status":"ok"}` {
		t.Errorf("healthz: %d %s", code, body)
	}
	// Nothing else: no logins, no metrics, no admin page.
	for _, path := range []string{"/metrics", "/", "/api/v1/captcha", "/api/admin/v1/auth/user", "/v1/me"} {
		if code, _, _ := get(t, c, "http://vmsauth"+path, tok); code != 404 {
			t.Errorf("GET %s on the forward-auth listener: %d, want 404", path, code)
		}
	}
	res, err := c.Post("http://vmsauth/v1/login_check", "application/json", strings.NewReader(`{"username":"admin","password":"admin-password"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 404 {
		t.Errorf("POST /v1/login_check on the forward-auth listener: %d, want 404", res.StatusCode)
	}
}

// TestForwardAuthTCP runs the listener on a loopback port, with keep-alive.
func TestForwardAuthTCP(t *testing.T) {
	dir := t.TempDir()
	getenv := envOf("VMSAUTH_DATA", dir, "VMSAUTH_BCRYPT_COST", "4", "VMSAUTH_ADMIN_PASSWORD", "admin-password")
	base, out := startServe(t, getenv, "--captcha=false", "--forward-auth-listen", "127.0.0.1:0")
	fa := loggedForwardAuth(t, out)
	if !strings.HasPrefix(fa, "http://127.0.0.1:") {
		t.Fatalf("forward auth at %s", fa)
	}
	tok := integrationToken(t, base, "admin", "admin-password")
	conns := 0
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		conns++
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	c := &http.Client{Transport: tr}
	for range 3 {
		if code, _, h := get(t, c, fa+"/auth/verify", tok); code != 200 || h.Get("X-Auth-Realm") != "integration" {
			t.Fatalf("verify: %d %v", code, h)
		}
	}
	if conns != 1 {
		t.Errorf("3 checks took %d connections; want 1 (keep-alive)", conns)
	}
	if code, _, _ := get(t, c, fa+"/api/admin/v1/permissions", tok); code != 404 {
		t.Errorf("admin API on the forward-auth listener: %d, want 404", code)
	}
}

// TestForwardAuthRefusesNonSocket: a mistyped path must not delete a file.
func TestForwardAuthRefusesNonSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "important.txt")
	if err := os.WriteFile(path, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	getenv := envOf("VMSAUTH_DATA", dir, "VMSAUTH_BCRYPT_COST", "4", "VMSAUTH_ADMIN_PASSWORD", "admin-password")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var stdout, stderr testkit.LogBuffer
	code := run(ctx, []string{"serve", "--listen", "127.0.0.1:0", "--forward-auth-listen", "unix:" + path}, getenv, strings.NewReader(""), &stdout, &stderr)
	if code == 0 || !strings.Contains(stderr.String(), "--forward-auth-listen") || !strings.Contains(stderr.String(), "not a socket") {
		t.Fatalf("exit %d, stderr %q; want a refusal naming the option", code, stderr.String())
	}
	if b, _ := os.ReadFile(path); string(b) != "keep me" {
		t.Fatalf("the file at the socket's path was changed: %q", b)
	}
}

// TestForwardAuthRefusesLiveSocket: a socket another process answers on is
// not taken from it.
func TestForwardAuthRefusesLiveSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fa.sock")
	other, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	go func() {
		for {
			c, err := other.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	getenv := envOf("VMSAUTH_DATA", dir, "VMSAUTH_BCRYPT_COST", "4", "VMSAUTH_ADMIN_PASSWORD", "admin-password")
	var stdout, stderr testkit.LogBuffer
	code := run(context.Background(), []string{"serve", "--listen", "127.0.0.1:0", "--forward-auth-listen", "unix:" + path}, getenv, strings.NewReader(""), &stdout, &stderr)
	if code == 0 || !strings.Contains(stderr.String(), "in use by another process") {
		t.Fatalf("exit %d, stderr %q; want a refusal", code, stderr.String())
	}
	if c, err := net.Dial("unix", path); err != nil {
		t.Fatalf("the other process lost its socket: %v", err)
	} else {
		c.Close()
	}
}
