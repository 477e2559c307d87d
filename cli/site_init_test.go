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

// An init that stopped half-way (the marker and some of the records in
// etcd, as a crash after a few chunks leaves them) is refused by serve,
// with what to do; run again, it is done from the start and boxes serve it.
func TestSiteInitInterrupted(t *testing.T) {
	dir, tok := populatedBox(t)
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	ec, err := etcd.New(etcd.Config{Endpoints: c.Endpoints(), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer ec.Close()
	// What a crash after the first chunk leaves: the marker, a user whose
	// record is there without the rest, no counters.
	for k, v := range map[string]string{
		"/vmsauth/init":                   `{"source":"box1:/var/lib/vmsauth/vmsauth.db","started":"2026-11-29T10:00:00Z"}`,
		"/vmsauth/u/00000000000000000007": `{"id":7,"login":"half"}`,
		"/vmsauth/l/half":                 "7",
		"/vmsauth/zz-left-by-the-crash":   "x",
	} {
		if _, err := ec.Txn(t.Context(), etcd.TxnRequest{Success: []etcd.Op{{Put: &etcd.PutRequest{Key: []byte(k), Value: []byte(v)}}}}); err != nil {
			t.Fatal(err)
		}
	}
	err = siteServeErr(t, c)
	if err == nil || !strings.Contains(err.Error(), "site init on this prefix has not finished") || !strings.Contains(err.Error(), "run `vmsauth site init` again") {
		t.Fatalf("serve on an unfinished init: %v", err)
	}
	// site status names it.
	code, out, errOut := cli(t, envOf(), "", "site", "status", "--data", t.TempDir(), "--etcd", strings.Join(c.Endpoints(), ","))
	if code != 0 || !strings.Contains(out, "Site init: UNFINISHED") {
		t.Fatalf("site status on an unfinished init: %d %s%s", code, out, errOut)
	}

	code, out, errOut = cli(t, envOf(), "", "site", "init", "--data", dir, "--etcd", strings.Join(c.Endpoints(), ","))
	if code != 0 || !strings.Contains(out, "had not finished; it was done again from the start") {
		t.Fatalf("site init run again: %d %s%s", code, out, errOut)
	}
	r, err := ec.Range(t.Context(), etcd.RangeRequest{Key: []byte("/vmsauth/"), RangeEnd: etcd.PrefixEnd([]byte("/vmsauth/")), KeysOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range r.KVs {
		if k := string(kv.Key); k == "/vmsauth/init" || strings.Contains(k, "half") || strings.Contains(k, "zz-left") || k == "/vmsauth/u/00000000000000000007" {
			t.Errorf("the redone init left %s", k)
		}
	}
	url, _, _ := siteBox(t, c)
	checkTokens(t, url, tok)
}

// site status shows the members, the leader and the revision: through the
// running service (with its watch), and from etcd directly when the
// service does not run; it exits 1 when the site has no leader.
func TestSiteStatus(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	eps := strings.Join(c.Endpoints(), ",")
	dirA := t.TempDir()
	_, _, stop := serveStoppable(t, envOf("VMSAUTH_BCRYPT_COST", "4", "VMSAUTH_ADMIN_PASSWORD", "admin-password"),
		"--data", dirA, "--insecure-http", "--captcha=false", "--etcd", eps)
	check := func(out string, service bool) {
		t.Helper()
		for _, want := range []string{`(?m)^Leader: +m[123]$`, `(?m)^Revision: +\d+$`, `(?m)^MEMBER +ID +CLIENT URLS +ROLE`,
			`(?m)^m1 .* (leader|follower) `, `(?m)^m2 .* (leader|follower) `, `(?m)^m3 .* (leader|follower) `, `(?m) leader +\d+ +\d+ (kB|B|MB) `} {
			if !regexp.MustCompile(want).MatchString(out) {
				t.Errorf("site status lacks %s:\n%s", want, out)
			}
		}
		if service != strings.Contains(out, "This box:  the service is running; watch") {
			t.Errorf("site status (service running: %v) says otherwise:\n%s", service, out)
		}
		if !service && !strings.Contains(out, "The service is not running") {
			t.Errorf("site status without the service does not say so:\n%s", out)
		}
	}
	code, out, errOut := cli(t, envOf(), "", "site", "status", "--data", dirA)
	if code != 0 {
		t.Fatalf("site status through the service: %d %s%s", code, out, errOut)
	}
	check(out, true)
	// The service stopped: the options it last served with (DATA/site).
	stop()
	code, out, errOut = cli(t, envOf(), "", "site", "status", "--data", dirA)
	if code != 0 {
		t.Fatalf("site status from etcd, the service stopped: %d %s%s", code, out, errOut)
	}
	check(out, false)
	// Any directory, with the etcd options given.
	code, out, errOut = cli(t, envOf(), "", "site", "status", "--data", t.TempDir(), "--etcd", eps)
	if code != 0 {
		t.Fatalf("site status from etcd: %d %s%s", code, out, errOut)
	}
	check(out, false)
	// A directory that never served a site, and no --etcd: refused.
	code, _, errOut = cli(t, envOf(), "", "site", "status", "--data", t.TempDir())
	if code == 0 || !strings.Contains(errOut, "not a site box") {
		t.Fatalf("site status without a site: %d %s", code, errOut)
	}

	// Two members of three gone: no leader, exit 1, the dead ones named.
	c.Kill(1)
	c.Kill(2)
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, out, errOut = cli(t, envOf(), "", "site", "status", "--data", t.TempDir(), "--etcd", eps)
		if code != 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond) // the survivor notices after an election timeout
	}
	if code != 1 || !strings.Contains(out, "Leader:    NONE") || strings.Count(out, "UNREACHABLE") != 2 {
		t.Fatalf("site status without a majority: %d %s%s", code, out, errOut)
	}
}

// A backup of a site is one revision written as an ordinary database: a
// single box restores it and serves the same users and tokens, and site
// init --from loads it into another prefix.
func TestSiteBackupRestore(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	url, dirA, _ := siteBox(t, c)
	client := &http.Client{Timeout: 10 * time.Second}
	for _, login := range []string{"cam1", "cam2"} {
		if code, out, errOut := cli(t, envOf("VMSAUTH_BCRYPT_COST", "4"), login+"-pass\n", "user", "add", "--data", dirA, "--login", login, "--api", "client,integration"); code != 0 {
			t.Fatalf("user add: %d %s%s", code, out, errOut)
		}
	}
	var tok boxTokens
	status, body := postJSON(t, client, url+"/api/v1/token", `{"login":"cam1","password":"cam1-pass"}`)
	if tok.client, _ = body["access_token"].(string); status != http.StatusOK {
		t.Fatalf("login: %d %v", status, body)
	}
	status, body = postJSON(t, client, url+"/v1/login_check", `{"username":"cam2","password":"cam2-pass"}`)
	tok.integration, _ = body["token"].(string)
	tok.refresh, _ = body["refresh_token"].(string)
	if status != http.StatusOK {
		t.Fatalf("integration login: %d %v", status, body)
	}

	file := filepath.Join(t.TempDir(), "site.db")
	code, out, errOut := cli(t, envOf(), "", "backup", "--data", dirA, file)
	if code != 0 || !regexp.MustCompile(`Backup of the site at etcd revision \d+ written to`).MatchString(out) {
		t.Fatalf("backup of a site box: %d %s%s", code, out, errOut)
	}
	// No temp file is left in the service's directory.
	if m, _ := filepath.Glob(filepath.Join(dirA, ".site-backup-*")); len(m) != 0 {
		t.Fatalf("the site backup left %v", m)
	}

	// Into another prefix of the same cluster, as into a new site.
	eps := strings.Join(c.Endpoints(), ",")
	code, out, errOut = cli(t, envOf(), "", "site", "init", "--data", t.TempDir(), "--from", file, "--etcd", eps, "--etcd-prefix", "/site2/")
	if code != 0 || !strings.Contains(out, "Copied 3 users, 2 sessions, 1 refresh tokens") {
		t.Fatalf("site init --from a site backup: %d %s%s", code, out, errOut)
	}
	a2, _ := startServe(t, envOf("VMSAUTH_BCRYPT_COST", "4"), "--data", t.TempDir(), "--insecure-http", "--captcha=false", "--etcd", eps, "--etcd-prefix", "/site2/")
	if got := request(t, client, http.MethodGet, a2.URL()+"/v1/me", tok.integration); got != http.StatusOK {
		t.Fatalf("the backup loaded into /site2/ refused a token: %d", got)
	}

	// Restored on a single box: the same users and tokens.
	single := t.TempDir()
	code, out, errOut = cli(t, envOf(), "", "restore", "--data", single, file)
	if code != 0 {
		t.Fatalf("restore of a site backup on a single box: %d %s%s", code, out, errOut)
	}
	a, _ := startServe(t, envOf("VMSAUTH_BCRYPT_COST", "4"), "--data", single, "--insecure-http", "--captcha=false")
	checkTokens(t, a.URL(), tok)
	if status, body := postJSON(t, client, a.URL()+"/api/v1/token", `{"login":"admin","password":"admin-password"}`); status != http.StatusOK {
		t.Fatalf("the site's admin on the restored box: %d %v", status, body)
	}
}
