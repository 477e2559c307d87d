package cli

import (
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"vmsauth/etcd"
	"vmsauth/etcd/etcdtest"
	"vmsauth/install/installtest"
	"vmsauth/internal/testkit"
)

// siteBox starts one serve app of a site on the cluster, with its own data
// directory, and returns its URL and data directory.
func siteBox(t *testing.T, c *etcdtest.Cluster) (url, dir string, out *testkit.LogBuffer) {
	t.Helper()
	dir = t.TempDir()
	a, out := startServe(t, envOf("VMSAUTH_BCRYPT_COST", "4", "VMSAUTH_ADMIN_PASSWORD", "admin-password"),
		"--data", dir, "--insecure-http", "--captcha=false", "--etcd", strings.Join(c.Endpoints(), ","))
	return a.URL(), dir, out
}

func request(t *testing.T, client *http.Client, method, url, token string) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// Two boxes on one 3-member cluster share users and sessions. There is no
// cache on the etcd store yet, so every token check reads etcd and a
// logout on one box is refused on the other at once. (The site-wide
// throttle and captchas: site_throttle_test.go.)
func TestSiteTwoBoxes(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	urlA, dirA, _ := siteBox(t, c)
	urlB, _, _ := siteBox(t, c)
	client := &http.Client{Timeout: 10 * time.Second}

	// A user created through box A (the CLI goes through A's control
	// socket: the box's own file is not the site's)...
	code, out, errOut := cli(t, envOf("VMSAUTH_BCRYPT_COST", "4"), "camera-pass\n",
		"user", "add", "--data", dirA, "--login", "cam1", "--api", "client")
	if code != 0 {
		t.Fatalf("user add through box A exited %d: %s%s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(dirA, databaseFile)); !os.IsNotExist(err) {
		t.Fatalf("a site box made a database file of its own: %v", err)
	}
	// ...logs in on box B.
	status, body := postJSON(t, client, urlB+"/api/v1/token", `{"login":"cam1","password":"camera-pass"}`)
	if status != http.StatusOK {
		t.Fatalf("login on B of a user made on A: %d %v", status, body)
	}
	token, _ := body["access_token"].(string)
	if got := request(t, client, http.MethodGet, urlA+"/api/v1/users/self", token); got != http.StatusOK {
		t.Fatalf("B's token on A: %d", got)
	}
	// A logout on A ends the token on B.
	if got := request(t, client, http.MethodPost, urlA+"/api/v1/logout", token); got != http.StatusOK {
		t.Fatalf("logout on A: %d", got)
	}
	if got := request(t, client, http.MethodGet, urlB+"/api/v1/users/self", token); got != http.StatusUnauthorized {
		t.Fatalf("B accepted a token logged out on A: %d", got)
	}

	// A site box's own file is not the site's: restoring it is refused
	// (site_init_test.go backs a site up and restores it).
	code, out, errOut = cli(t, envOf(), "", "restore", "--data", dirA, filepath.Join(t.TempDir(), "b.db"))
	if code == 0 || !strings.Contains(errOut, "site init --from FILE") {
		t.Fatalf("restore on a site box: exit %d, %s%s", code, out, errOut)
	}
}

// Without a majority, a login answers 503 in each API's own envelope, and
// before the client's 10 s timeout (the goal is 5 s; the time is logged).
func TestSiteNoMajority(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	urlA, _, outA := siteBox(t, c)
	client := &http.Client{Timeout: 10 * time.Second}
	// A login that works first: the first admin exists.
	status, body := postJSON(t, client, urlA+"/api/v1/token", `{"login":"admin","password":"admin-password"}`)
	if status != http.StatusOK {
		t.Fatalf("login with the cluster whole: %d %v", status, body)
	}
	token, _ := body["access_token"].(string)
	c.Kill(1)
	c.Kill(2)
	// A token this box never checked is not in its cache, so the check
	// reads etcd: 503, not 401 or 500 (TestSiteNoMajorityStaleGrace has
	// the cached case).
	if got := request(t, client, http.MethodGet, urlA+"/api/v1/users/self", token); got != http.StatusServiceUnavailable {
		t.Fatalf("token check without a majority: %d, want 503", got)
	}
	for _, tc := range []struct{ path, body, want string }{
		{"/api/v1/token", `{"login":"admin","password":"admin-password"}`, "message"},
		{"/api/admin/v1/auth/token", `{"login":"admin","password":"admin-password"}`, "message"},
		{"/v1/login_check", `{"username":"admin","password":"admin-password"}`, "errors"},
	} {
		start := time.Now()
		status, body := postJSON(t, client, urlA+tc.path, tc.body)
		t.Logf("%s answered %d in %v without a majority", tc.path, status, time.Since(start))
		if status != http.StatusServiceUnavailable {
			t.Fatalf("%s without a majority: %d %v, want 503", tc.path, status, body)
		}
		if _, ok := body[tc.want]; !ok || len(body) != 1 {
			t.Fatalf("%s: 503 not in the API's envelope: %v", tc.path, body)
		}
		if tc.want == "errors" {
			e := body["errors"].([]any)[0].(map[string]any)
			if e["error"] != float64(503) {
				t.Fatalf("%s: %v", tc.path, body)
			}
		}
	}
	// An outage is not the box's fault: WARN lines, no ERROR.
	if strings.Contains(outA.String(), "level=ERROR") {
		t.Fatalf("an etcd outage logged at ERROR:\n%s", outA)
	}
}

// The site options are in --print-config, the password redacted, and the
// password never comes from a flag.
func TestSitePrintConfig(t *testing.T) {
	var out, errb strings.Builder
	env := Env{Getenv: envOf("VMSAUTH_ETCD", "https://10.0.0.5:2379,https://10.0.0.6:2379",
		"VMSAUTH_ETCD_PASSWORD", "etcd-secret-pw"), Stdout: &out, Stderr: &errb}
	cfg, err := serveConfig(env, []string{"--etcd-user", "vmsauth", "--etcd-ca", "/etc/vmsauth/etcd-ca.pem", "--print-config"})
	if err != nil || cfg != nil {
		t.Fatalf("print-config: %v %v %s", cfg, err, errb.String())
	}
	for _, want := range []string{`(?m)^etcd +=.*"https://10.0.0.5:2379,https://10.0.0.6:2379" +# VMSAUTH_ETCD$`,
		`(?m)^etcd-user += "vmsauth" +# flag$`, `(?m)^etcd-ca += "/etc/vmsauth/etcd-ca.pem" +# flag$`,
		`(?m)^etcd-prefix += "/vmsauth/" +# default$`, `(?m)^etcd-password += "\[redacted\]" +# VMSAUTH_ETCD_PASSWORD$`} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("print-config lacks %s:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "etcd-secret-pw") {
		t.Fatalf("print-config showed the etcd password:\n%s", out.String())
	}
	if _, err := serveConfig(Env{Getenv: envOf(), Stdout: &out, Stderr: &errb}, []string{"--etcd-password", "x"}); err == nil {
		t.Fatal("serve took the etcd password as a flag")
	}
}

func TestSiteOptionsChecked(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte("from-file\n"), 0o600)
	for _, tc := range []struct {
		args []string
		env  []string
		want string // "" for no error
	}{
		{[]string{"--etcd-user", "u"}, nil, "--etcd-user needs --etcd"},
		{[]string{"--etcd-prefix", "/x/"}, nil, "--etcd-prefix needs --etcd"},
		{[]string{"--etcd", "10.0.0.5:2379"}, nil, "want http://host:port"},
		{[]string{"--etcd", "http://a:1", "--etcd-cert", "c"}, nil, "go together"},
		{[]string{"--etcd", "http://a:1", "--etcd-password-file", pwFile}, nil, "needs --etcd-user"},
		{[]string{"--etcd", "http://a:1", "--etcd-user", "u"}, nil, "needs its password"},
		{[]string{"--etcd", "http://a:1"}, []string{etcdPasswordEnv, "p"}, "--etcd-user is not"},
		{[]string{"--etcd", "http://a:1", "--etcd-user", "u", "--etcd-password-file", pwFile}, []string{etcdPasswordEnv, "p"}, "not both"},
		{[]string{"--etcd", "http://a:1", "--etcd-user", "u", "--etcd-password-file", pwFile}, nil, ""},
		{[]string{"--etcd", "http://a:1", "--etcd-user", "u"}, []string{etcdPasswordEnv, "p"}, ""},
	} {
		var cfg config
		fs := serveFlags(&cfg)
		var sink strings.Builder
		_, err := parseFlagSources(fs, tc.args, envOf(), &sink)
		if err == nil {
			err = cfg.validate()
		}
		if err == nil {
			var ecfg etcd.Config
			ecfg, err = cfg.etcdConfig(envOf(tc.env...))
			if err == nil && ecfg.Password != "p" && ecfg.Password != "from-file" {
				t.Errorf("%q: password %q", tc.args, ecfg.Password)
			}
		}
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%q %q: %v, want %q", tc.args, tc.env, err, tc.want)
		}
	}
}

// install passes the site options on to the unit: the password file's
// path, never a password; a password in this shell's environment is
// refused, since the service would not see it.
func TestInstallSite(t *testing.T) {
	installtest.FakeSystemctl(t)
	host := pretendHost(true, false, true)
	pw := filepath.Join(t.TempDir(), "etcd-password")
	if err := os.WriteFile(pw, []byte("etcd-secret-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	site := []string{"install", "--etcd", "https://10.0.0.5:2379,https://10.0.0.6:2379", "--etcd-user", "vmsauth"}

	code, _, stderr := cliOn(t, host, envOf(etcdPasswordEnv, "etcd-secret-pw"), append(site, "--etcd-password-file", pw)...)
	oneLine(t, code, stderr, etcdPasswordEnv+" is set, but the service does not see this shell's environment")
	code, _, stderr = cliOn(t, host, envOf(), site...)
	oneLine(t, code, stderr, "the service needs its password in --etcd-password-file")
	code, _, stderr = cliOn(t, host, envOf(), append(site, "--etcd-password-file", "etcd-password")...)
	oneLine(t, code, stderr, `--etcd-password-file "etcd-password": the service needs an absolute path`)
	code, _, stderr = cliOn(t, host, envOf(), append(site, "--etcd-password-file", "/nonexistent/pw")...)
	oneLine(t, code, stderr, "--etcd-password-file")
	noFile(t, userUnit(t))

	code, _, stderr = cliOn(t, host, envOf(), append(site, "--etcd-password-file", pw, "--etcd-prefix", "/site1/")...)
	if code != 0 {
		t.Fatalf("install: exit %d, stderr %q", code, stderr)
	}
	b, err := os.ReadFile(userUnit(t))
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	for _, want := range []string{`"--etcd=https://10.0.0.5:2379,https://10.0.0.6:2379"`, `"--etcd-password-file=` + pw + `"`,
		`"--etcd-prefix=/site1/"`, `"--etcd-user=vmsauth"`} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %s:\n%s", want, unit)
		}
	}
	if strings.Contains(unit, "etcd-secret-pw") {
		t.Fatalf("the unit holds the etcd password:\n%s", unit)
	}
}
