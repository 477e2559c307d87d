package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"vmsauth/internal/testkit"
	"vmsauth/store"
)

// envOf returns a getenv over a fixed map; tests never touch the process
// environment.
func envOf(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// cli runs one command to completion.
func cli(t *testing.T, getenv func(string) string, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, getenv, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

var listenRE = regexp.MustCompile(`url=(https?://[^ \n]+)`)

// startServe runs "vmsauth serve" in the background until the test ends and
// returns its base URL and output.
func startServe(t *testing.T, getenv func(string) string, args ...string) (string, *testkit.LogBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &testkit.LogBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append([]string{"serve", "--listen", "127.0.0.1:0"}, args...), getenv, strings.NewReader(""), out, out)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("serve exited %d after SIGTERM-like stop:\n%s", code, out)
			}
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop")
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if m := listenRE.FindStringSubmatch(out.String()); m != nil {
			return m[1], out
		}
		select {
		case code := <-done:
			done <- code
			t.Fatalf("serve exited %d:\n%s", code, out)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("serve did not start:\n%s", out)
	return "", nil
}

func postJSON(t *testing.T, client *http.Client, url, body string) (int, map[string]any) {
	t.Helper()
	res, err := client.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var v map[string]any
	if err := json.NewDecoder(res.Body).Decode(&v); err != nil {
		t.Fatalf("%s: body is not JSON: %v", url, err)
	}
	return res.StatusCode, v
}

func TestUserAddThenLogin(t *testing.T) {
	dir := t.TempDir()
	getenv := envOf("VMSAUTH_DATA", dir, "VMSAUTH_BCRYPT_COST", "4", "VMSAUTH_ADMIN_PASSWORD", "admin-password")
	code, out, errOut := cli(t, getenv, "camera-pass\n", "user", "add", "--login", "cam1", "--name", "Camera One", "--api", "client,integration")
	if code != 0 {
		t.Fatalf("user add exited %d: %s%s", code, out, errOut)
	}
	if strings.Contains(out, "camera-pass") {
		t.Fatal("user add printed the password it was given")
	}
	url, _ := startServe(t, getenv, "--insecure-http", "--captcha=false")

	status, body := postJSON(t, http.DefaultClient, url+"/api/v1/token", `{"login":"cam1","password":"camera-pass"}`)
	if status != http.StatusOK || body["access_token"] == "" {
		t.Fatalf("client login: %d %v", status, body)
	}
	if name := body["user"].(map[string]any)["name"]; name != "Camera One" {
		t.Fatalf("name = %v", name)
	}
	status, body = postJSON(t, http.DefaultClient, url+"/v1/login_check", `{"username":"cam1","password":"camera-pass"}`)
	if status != http.StatusOK || body["token"] == "" {
		t.Fatalf("integration login: %d %v", status, body)
	}
	// The existing user means serve made no first admin.
	if _, err := os.Stat(filepath.Join(dir, initialPasswordFile)); !os.IsNotExist(err) {
		t.Fatalf("initial admin password file exists on a non-empty database: %v", err)
	}
}

func TestServeFirstStart(t *testing.T) {
	dir := t.TempDir()
	url, out := startServe(t, envOf("VMSAUTH_BCRYPT_COST", "4"), "--data", dir)

	pwFile := filepath.Join(dir, initialPasswordFile)
	st, err := os.Stat(pwFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v %v; want mode 0600", pwFile, st, err)
	}
	raw, _ := os.ReadFile(pwFile)
	password := strings.TrimSpace(string(raw))
	if len(password) < 16 || !strings.Contains(out.String(), password) {
		t.Fatalf("the generated password %q was not printed:\n%s", password, out)
	}
	if st, err := os.Stat(filepath.Join(dir, "tls-key.pem")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("TLS key: %v %v; want mode 0600", st, err)
	}

	// A client that trusts the box's certificate and checks the peer name,
	// as PHP does, connects by IP: 127.0.0.1 must be in the SANs.
	certPEM, err := os.ReadFile(filepath.Join(dir, "tls-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !cert.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) || cert.DNSNames[0] != "localhost" {
		t.Fatalf("SANs: %v %v", cert.DNSNames, cert.IPAddresses)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	status, body := postJSON(t, client, url+"/api/admin/v1/auth/token", `{"login":"admin","password":"`+password+`"}`)
	if status != http.StatusOK || body["token_type"] != "Bearer" {
		t.Fatalf("admin login with the initial password: %d %v", status, body)
	}
	localhostURL := strings.Replace(url, "127.0.0.1", "localhost", 1)
	if status, _ := postJSON(t, client, localhostURL+"/api/admin/v1/auth/token", `{}`); status != http.StatusUnprocessableEntity {
		t.Fatalf("by name localhost: %d", status)
	}
}

func TestServeAdminPasswordFromEnv(t *testing.T) {
	dir := t.TempDir()
	url, out := startServe(t, envOf("VMSAUTH_BCRYPT_COST", "4", "VMSAUTH_ADMIN_PASSWORD", "chosen-password"), "--data", dir, "--insecure-http")
	if strings.Contains(out.String(), "chosen-password") {
		t.Fatal("the password from the environment was printed")
	}
	if _, err := os.Stat(filepath.Join(dir, initialPasswordFile)); !os.IsNotExist(err) {
		t.Fatalf("password file written for a password the installer chose: %v", err)
	}
	if status, body := postJSON(t, http.DefaultClient, url+"/api/admin/v1/auth/token", `{"login":"admin","password":"chosen-password"}`); status != http.StatusOK {
		t.Fatalf("admin login: %d %v", status, body)
	}
}

func TestUserCommands(t *testing.T) {
	getenv := envOf("VMSAUTH_DATA", t.TempDir(), "VMSAUTH_BCRYPT_COST", "4")
	mustRun := func(stdin string, args ...string) string {
		t.Helper()
		code, out, errOut := cli(t, getenv, stdin, args...)
		if code != 0 {
			t.Fatalf("%v exited %d: %s%s", args, code, out, errOut)
		}
		return out
	}
	out := mustRun("", "user", "add", "--login", "Tech", "--api", "admin", "--permissions", "all")
	if !regexp.MustCompile(`Password: \S{20}`).MatchString(out) {
		t.Fatalf("no generated password printed:\n%s", out)
	}
	mustRun("operator-pw\n", "user", "add", "--login", "op", "--permissions", "cameras-view,archive-view", "--sessions-limit", "2")

	out = mustRun("", "user", "list")
	// "Tech" is stored as "tech": logins are prepared in lower case.
	if !strings.Contains(out, "tech") || !strings.Contains(out, "op") {
		t.Fatalf("list:\n%s", out)
	}
	out = mustRun("", "user", "show", "tech") // logins are case-insensitive
	if !strings.Contains(out, "admin") || !strings.Contains(out, "streams-update") {
		t.Fatalf("show:\n%s", out)
	}
	mustRun("", "user", "grant", "op", "ptz-control")
	out = mustRun("", "user", "revoke", "op", "archive-view")
	if !strings.Contains(out, "cameras-view, ptz-control") || strings.Contains(out, "archive-view") {
		t.Fatalf("after grant and revoke:\n%s", out)
	}
	out = mustRun("", "user", "disable", "op")
	if out = mustRun("", "user", "show", "op"); !strings.Contains(out, "disabled") {
		t.Fatalf("show after disable:\n%s", out)
	}
	mustRun("", "user", "enable", "op")
	mustRun("new-password\n", "user", "passwd", "op")
	mustRun("", "user", "delete", "op")

	for _, tt := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"DuplicateLogin", []string{"user", "add", "--login", "TECH"}, 1, "already been taken"},
		{"ShortPassword", []string{"user", "add", "--login", "x"}, 1, "password"},
		{"UnknownUser", []string{"user", "show", "ghost"}, 1, `no user with login "ghost"`},
		{"UnknownPermission", []string{"user", "grant", "tech", "fly"}, 1, "fly"},
		{"MissingLogin", []string{"user", "passwd"}, 2, "login is required"},
		{"UnknownSubcommand", []string{"user", "frob", "tech"}, 2, "unknown user command"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			stdin := ""
			if tt.name == "ShortPassword" {
				stdin = "short\n"
			}
			code, out, errOut := cli(t, getenv, stdin, tt.args...)
			if code != tt.code || !strings.Contains(out+errOut, tt.want) {
				t.Fatalf("exit %d, output %q; want exit %d mentioning %q", code, out+errOut, tt.code, tt.want)
			}
		})
	}
}

func TestDatabaseInUse(t *testing.T) {
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, databaseFile), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	start := time.Now()
	code, _, errOut := cli(t, envOf("VMSAUTH_DATA", dir), "", "user", "list")
	if code != 1 || !strings.Contains(errOut, "in use by another process") {
		t.Fatalf("exit %d: %s; want a clear in-use error", code, errOut)
	}
	if time.Since(start) > 15*time.Second {
		t.Fatal("waited far too long for the lock")
	}
}

func TestConfig(t *testing.T) {
	code, out, _ := cli(t, envOf("VMSAUTH_LISTEN", ":9443", "VMSAUTH_ADMIN_PASSWORD", "secret-one"), "", "serve", "--print-config", "--data", "/srv/x")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{`":9443"`, "VMSAUTH_LISTEN", `"/srv/x"`, "# flag", "[redacted]"} {
		if !strings.Contains(out, want) {
			t.Errorf("print-config lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "secret-one") {
		t.Error("print-config shows the admin password")
	}

	for _, tt := range []struct {
		name   string
		getenv func(string) string
		args   []string
		want   string
	}{
		{"BadListen", envOf(), []string{"--listen", "nowhere"}, "--listen"},
		{"BadEnvValue", envOf("VMSAUTH_BCRYPT_COST", "ten"), nil, "VMSAUTH_BCRYPT_COST"},
		{"CostOutOfRange", envOf(), []string{"--bcrypt-cost", "40"}, "--bcrypt-cost"},
		{"HalfTLS", envOf(), []string{"--tls-cert", "x.pem"}, "--tls-key"},
		{"BadProxy", envOf(), []string{"--trusted-proxies", "10.0.0.0/8,proxy"}, "--trusted-proxies"},
		{"BadLicense", envOf(), []string{"--analytic-licenses", "analytic_l1=5/9"}, "--analytic-licenses"},
		{"BadMaxConns", envOf("VMSAUTH_MAX_CONNS_PER_IP", "-1"), nil, "--max-conns-per-ip"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := cli(t, tt.getenv, "", append([]string{"serve", "--print-config"}, tt.args...)...)
			if code == 0 || !strings.Contains(out+errOut, tt.want) {
				t.Fatalf("exit %d, output %q; want an error naming %s", code, out+errOut, tt.want)
			}
		})
	}
}

// TestConnLimitConfig: loopback and every trusted proxy are exempt from
// the per-address connection cap; other peers are capped.
func TestConnLimitConfig(t *testing.T) {
	c := config{MaxConnsPerIP: 7, TrustedProxies: "10.0.0.0/8, 192.0.2.1,2001:db8::/32"}
	lim := c.connLimit(nil)
	exempt := func(ip string) bool {
		for _, p := range lim.Exempt {
			if p.Contains(netip.MustParseAddr(ip)) {
				return true
			}
		}
		return false
	}
	for ip, want := range map[string]bool{
		"127.0.0.1": true, "127.9.9.9": true, "::1": true, "10.1.2.3": true, "192.0.2.1": true,
		"2001:db8:5::1": true, "192.0.2.2": false, "198.51.100.1": false, "2001:db9::1": false,
	} {
		if exempt(ip) != want {
			t.Errorf("%s exempt = %v, want %v", ip, !want, want)
		}
	}
	if lim.Max != 7 {
		t.Errorf("Max = %d", lim.Max)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := cli(t, envOf(), "", "version")
	if code != 0 || !strings.HasPrefix(out, "vmsauth ") {
		t.Fatalf("version: %d %q", code, out)
	}
	if code, _, _ := cli(t, envOf(), "", "frobnicate"); code != 2 {
		t.Fatalf("unknown command exit = %d, want 2", code)
	}
}
