package cli

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"vmsauth/etcd"
	"vmsauth/etcd/etcdtest"
	"vmsauth/internal/testkit"
)

// serveStoppable is startServe with a stop the test calls when it wants
// the box down (site init refuses a box whose service runs).
func serveStoppable(t *testing.T, getenv func(string) string, args ...string) (a *app, out *testkit.LogBuffer, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out = &testkit.LogBuffer{}
	env := Env{Getenv: getenv, Stdin: strings.NewReader(""), Stdout: out, Stderr: out}
	cfg, err := serveConfig(env, append([]string{"--listen", "127.0.0.1:0"}, args...))
	if err != nil || cfg == nil {
		cancel()
		t.Fatalf("serve flags %q: %v\n%s", args, err, out)
	}
	a, err = newApp(ctx, env, cfg)
	if err != nil {
		cancel()
		t.Fatalf("serve did not start: %v\n%s", err, out)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve stopped with %v:\n%s", err, out)
			}
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop")
		}
		a.Close()
	}
	t.Cleanup(stop)
	return a, out, stop
}

// siteServeErr runs serve --etcd on the cluster in a new data directory
// and returns why it would not start (nil: it started, and is stopped).
func siteServeErr(t *testing.T, c *etcdtest.Cluster, extra ...string) error {
	t.Helper()
	out := &testkit.LogBuffer{}
	env := Env{Getenv: envOf("VMSAUTH_BCRYPT_COST", "4", "VMSAUTH_ADMIN_PASSWORD", "admin-password"), Stdin: strings.NewReader(""), Stdout: out, Stderr: out}
	cfg, err := serveConfig(env, append([]string{"--listen", "127.0.0.1:0", "--data", t.TempDir(), "--insecure-http",
		"--captcha=false", "--etcd", strings.Join(c.Endpoints(), ",")}, extra...))
	if err != nil {
		t.Fatal(err)
	}
	a, err := newApp(context.Background(), env, cfg)
	if err == nil {
		a.Close()
	}
	return err
}

// populatedBox makes a box on its own file with users, a live client
// session, an integration token with its refresh token and an audit trail,
// stops it, and returns its data directory and the tokens.
type boxTokens struct {
	client, integration, refresh string
}

func populatedBox(t *testing.T) (string, boxTokens) {
	t.Helper()
	dir := t.TempDir()
	getenv := envOf("VMSAUTH_DATA", dir, "VMSAUTH_BCRYPT_COST", "4", "VMSAUTH_ADMIN_PASSWORD", "admin-password")
	for _, login := range []string{"cam1", "cam2", "viewer"} {
		if code, out, errOut := cli(t, getenv, login+"-pass\n", "user", "add", "--login", login, "--api", "client,integration"); code != 0 {
			t.Fatalf("user add %s: %d %s%s", login, code, out, errOut)
		}
	}
	// A deleted user (id 3) moves the counter past the ids left: the
	// site must not give id 3 again.
	if code, out, errOut := cli(t, getenv, "", "user", "delete", "viewer"); code != 0 {
		t.Fatalf("user delete: %d %s%s", code, out, errOut)
	}
	a, _, stop := serveStoppable(t, getenv, "--insecure-http", "--captcha=false")
	client := &http.Client{Timeout: 10 * time.Second}
	var tok boxTokens
	status, body := postJSON(t, client, a.URL()+"/api/v1/token", `{"login":"cam1","password":"cam1-pass"}`)
	if tok.client, _ = body["access_token"].(string); status != http.StatusOK || tok.client == "" {
		t.Fatalf("client login on the box: %d %v", status, body)
	}
	status, body = postJSON(t, client, a.URL()+"/v1/login_check", `{"username":"cam2","password":"cam2-pass"}`)
	tok.integration, _ = body["token"].(string)
	tok.refresh, _ = body["refresh_token"].(string)
	if status != http.StatusOK || tok.integration == "" || tok.refresh == "" {
		t.Fatalf("integration login on the box: %d %v", status, body)
	}
	if status, body := postJSON(t, client, a.URL()+"/api/v1/token", `{"login":"cam1","password":"wrong-guess"}`); status != http.StatusUnprocessableEntity {
		t.Fatalf("wrong password: %d %v", status, body)
	}
	// While the service runs, site init refuses: a login made after the
	// copy would be lost.
	code, out, errOut := cli(t, envOf(), "", "site", "init", "--data", dir, "--etcd", "http://127.0.0.1:1")
	if code == 0 || !strings.Contains(errOut, "the service is running") {
		t.Fatalf("site init beside a running service: %d %s%s", code, out, errOut)
	}
	stop() // writes the audit trail
	return dir, tok
}

// checkTokens checks that a site box at url accepts what the original box
// issued: the client token, the integration token, the refresh token once,
// and the users' passwords.
func checkTokens(t *testing.T, url string, tok boxTokens) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	if got := request(t, client, http.MethodGet, url+"/api/v1/users/self", tok.client); got != http.StatusOK {
		t.Fatalf("a client token issued before init: %d, want 200", got)
	}
	if got := request(t, client, http.MethodGet, url+"/v1/me", tok.integration); got != http.StatusOK {
		t.Fatalf("an integration token issued before init: %d, want 200", got)
	}
	status, body := postJSON(t, client, url+"/v1/token/refresh", `{"refresh_token":"`+tok.refresh+`"}`)
	if status != http.StatusOK {
		t.Fatalf("the refresh token issued before init: %d %v", status, body)
	}
	if status, body := postJSON(t, client, url+"/v1/token/refresh", `{"refresh_token":"`+tok.refresh+`"}`); status != http.StatusUnauthorized {
		t.Fatalf("the refresh token used twice: %d %v, want 401", status, body)
	}
	for _, l := range []string{`{"login":"cam1","password":"cam1-pass"}`, `{"login":"CAM2","password":"cam2-pass"}`} {
		if status, body := postJSON(t, client, url+"/api/v1/token", l); status != http.StatusOK {
			t.Fatalf("login %s: %d %v", l, status, body)
		}
	}
	if status, body := postJSON(t, client, url+"/api/v1/token", `{"login":"viewer","password":"viewer-pass"}`); status != http.StatusUnprocessableEntity {
		t.Fatalf("a deleted user logged in: %d %v", status, body)
	}
}

// siteRevision is the cluster's revision now.
func siteRevision(t *testing.T, c *etcdtest.Cluster) int64 {
	t.Helper()
	ec, err := etcd.New(etcd.Config{Endpoints: c.Endpoints(), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer ec.Close()
	r, err := ec.Range(t.Context(), etcd.RangeRequest{Key: []byte("/"), RangeEnd: []byte{0}, CountOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	return r.Header.Revision
}

// A box's users, sessions, refresh tokens and audit go into an empty site
// in one go: a site box accepts the tokens the box issued, the refresh
// token once, the passwords, and shows the audit trail; the box's file is
// untouched; a second init onto the same prefix is refused and changes
// nothing.
func TestSiteInitFromBox(t *testing.T) {
	dir, tok := populatedBox(t)
	before, err := os.ReadFile(filepath.Join(dir, databaseFile))
	if err != nil {
		t.Fatal(err)
	}
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	eps := strings.Join(c.Endpoints(), ",")
	code, out, errOut := cli(t, envOf(), "", "site", "init", "--data", dir, "--etcd", eps)
	if code != 0 {
		t.Fatalf("site init: %d %s%s", code, out, errOut)
	}
	t.Log(out)
	for _, want := range []string{"Copied 2 users, 2 sessions, 1 refresh tokens", "left untouched"} {
		if !strings.Contains(out, want) {
			t.Errorf("site init output lacks %q:\n%s", want, out)
		}
	}
	after, err := os.ReadFile(filepath.Join(dir, databaseFile))
	if err != nil || !bytes.Equal(before, after) {
		t.Fatalf("site init changed the box's file (%v)", err)
	}

	url, dirB, _ := siteBox(t, c)
	checkTokens(t, url, tok)
	// The audit trail came along (the failed guess made before init).
	code, out, errOut = cli(t, envOf(), "", "audit", "--data", dirB, "--login", "cam1")
	if code != 0 || !strings.Contains(out, "failed") {
		t.Fatalf("audit on the site: %d %s%s", code, out, errOut)
	}
	// The counter came along: a new user does not take a deleted user's id.
	code, out, errOut = cli(t, envOf("VMSAUTH_BCRYPT_COST", "4"), "new-pass\n", "user", "add", "--data", dirB, "--login", "newcomer")
	if code != 0 {
		t.Fatalf("user add on the site: %d %s%s", code, out, errOut)
	}
	code, out, _ = cli(t, envOf(), "", "user", "show", "--data", dirB, "newcomer")
	if code != 0 || !regexp.MustCompile(`(?m)^id +4$`).MatchString(out) {
		t.Fatalf("the site gave the new user an id it gave before:\n%s", out)
	}

	// A second init onto the same prefix is refused and changes nothing.
	rev := siteRevision(t, c)
	code, out, errOut = cli(t, envOf(), "", "site", "init", "--data", dir, "--etcd", eps)
	if code == 0 || !strings.Contains(errOut, "already holds a site") || !strings.Contains(errOut, "nothing was changed") {
		t.Fatalf("second site init: %d %s%s", code, out, errOut)
	}
	if got := siteRevision(t, c); got != rev {
		t.Fatalf("a refused site init changed the site: revision %d, then %d", rev, got)
	}
	if got := request(t, &http.Client{Timeout: 10 * time.Second}, http.MethodGet, url+"/api/v1/users/self", tok.client); got != http.StatusOK {
		t.Fatalf("after a refused second init, the token: %d", got)
	}
}
