package cli

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"vmsauth/etcd"
	"vmsauth/etcd/etcdtest"
	"vmsauth/internal/testkit"
)

// captchaBox starts a site box with captchas on (siteBox turns them off).
func captchaBox(t *testing.T, c *etcdtest.Cluster) (url, dir string, out *testkit.LogBuffer) {
	t.Helper()
	dir = t.TempDir()
	a, out := startServe(t, envOf("VMSAUTH_BCRYPT_COST", "4", "VMSAUTH_ADMIN_PASSWORD", "admin-password"),
		"--data", dir, "--insecure-http", "--etcd", strings.Join(c.Endpoints(), ","))
	return a.URL(), dir, out
}

// from is an HTTP client whose connections come from ip (any address of
// 127.0.0.0/8 is this host), so that each looks like another client.
func from(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
}

// TestSiteThrottle: the login throttle's limits hold over the two boxes of
// a site together. 10 failures of one login split over two boxes lock it
// on both, for an existing login and an unknown one alike, even for the
// right password; 10 requests of one client split over two boxes use up
// its budget on both. Each box logs its own first refusal of a lock once.
func TestSiteThrottle(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	urlA, _, outA := siteBox(t, c)
	urlB, _, outB := siteBox(t, c)
	boxes := []string{urlA, urlB}
	const admin = "/api/admin/v1/auth/token"

	n := 0
	fresh := func() *http.Client { n++; return from(fmt.Sprintf("127.0.1.%d", n)) }
	for _, login := range []string{"admin", "ghost"} {
		// Five wrong passwords on each box, each from another client.
		for i := range 10 {
			status, body := postJSON(t, fresh(), boxes[i%2]+admin, fmt.Sprintf(`{"login":%q,"password":"wrong-%d"}`, login, i))
			if status != http.StatusUnprocessableEntity {
				t.Fatalf("%s: failure %d on box %d: %d %v, want 422", login, i+1, i%2, status, body)
			}
		}
		// Locked on both boxes: the right password too, from clients
		// neither box has seen.
		for i, box := range boxes {
			for range 2 {
				status, body := postJSON(t, fresh(), box+admin, fmt.Sprintf(`{"login":%q,"password":"admin-password"}`, login))
				if status != http.StatusTooManyRequests {
					t.Fatalf("%s after 10 failures split over two boxes: box %d answered %d %v, want 429", login, i, status, body)
				}
			}
		}
	}
	// One line per box and lock: each box logs its own first refusal.
	for i, out := range []*testkit.LogBuffer{outA, outB} {
		for _, login := range []string{"admin", "ghost"} {
			if got := strings.Count(out.String(), `msg="login throttled; further refusals are counted until the window ends" api=admin login=`+login); got != 1 {
				t.Errorf("box %d logged the lock of %s %d times, want once:\n%s", i, login, got, out)
			}
		}
	}

	// The per-client limit: 10 requests of one client, five on each box,
	// then the client is refused on both.
	one := from("127.0.2.1")
	for i := range 10 {
		status, body := postJSON(t, one, boxes[i%2]+admin, fmt.Sprintf(`{"login":"someone%d","password":"x"}`, i))
		if status != http.StatusUnprocessableEntity {
			t.Fatalf("request %d of one client: %d %v, want 422", i+1, status, body)
		}
	}
	for i, box := range boxes {
		if status, body := postJSON(t, one, box+admin, `{"login":"someone-else","password":"x"}`); status != http.StatusTooManyRequests {
			t.Fatalf("11th request of one client, on box %d: %d %v, want 429", i, status, body)
		}
	}
	// Another client is not concerned.
	if status, body := postJSON(t, from("127.0.2.2"), urlB+admin, `{"login":"someone","password":"x"}`); status != http.StatusUnprocessableEntity {
		t.Fatalf("another client: %d %v, want 422", status, body)
	}
}

// captchaDigits reads the answer of a captcha key as only a box can: with
// the secret that sealed it, which the test reads where a box keeps it,
// the site's in etcd (or, where boxes do not share one, box A's own file).
func captchaDigits(t *testing.T, c *etcdtest.Cluster, dirA, key string) string {
	t.Helper()
	var secrets [][]byte
	ec, err := etcd.New(etcd.Config{Endpoints: c.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	defer ec.Close()
	r, err := ec.Range(context.Background(), etcd.RangeRequest{Key: []byte("/vmsauth/secret/captcha-secret")})
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range r.KVs {
		secrets = append(secrets, kv.Value)
	}
	if b, err := os.ReadFile(filepath.Join(dirA, "captcha-secret")); err == nil {
		secrets = append(secrets, b)
	}
	raw, err := base64.RawURLEncoding.DecodeString(key)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range secrets {
		aead, err := chacha20poly1305.NewX(secret)
		if err != nil {
			t.Fatal(err)
		}
		plain, err := aead.Open(nil, raw[:chacha20poly1305.NonceSizeX], raw[chacha20poly1305.NonceSizeX:], []byte("vmsauth captcha key v1"))
		if err != nil {
			continue
		}
		var b strings.Builder
		for _, d := range plain[8:] {
			b.WriteByte('0' + d)
		}
		return b.String()
	}
	t.Fatalf("no secret of the site or of box A opens the key (%d tried)", len(secrets))
	return ""
}

// TestSiteCaptcha: a captcha drawn by box A is accepted by box B once, and
// refused the second time on either box.
func TestSiteCaptcha(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	urlA, dirA, _ := captchaBox(t, c)
	urlB, _, _ := captchaBox(t, c)
	client := &http.Client{Timeout: 10 * time.Second}
	code, out, errOut := cli(t, envOf("VMSAUTH_BCRYPT_COST", "4"), "camera-pass\n",
		"user", "add", "--data", dirA, "--login", "cam1", "--api", "client")
	if code != 0 {
		t.Fatalf("user add through box A exited %d: %s%s", code, out, errOut)
	}
	res, err := client.Get(urlA + "/api/v1/captcha")
	if err != nil {
		t.Fatal(err)
	}
	var drawn struct{ Key string }
	err = json.NewDecoder(res.Body).Decode(&drawn)
	res.Body.Close()
	if err != nil || drawn.Key == "" {
		t.Fatalf("captcha from A: %v %+v", err, drawn)
	}
	answer := captchaDigits(t, c, dirA, drawn.Key)
	login := fmt.Sprintf(`{"login":"cam1","password":"camera-pass","session_id":"null","key":%q,"captcha":%q}`, drawn.Key, answer)
	if status, body := postJSON(t, client, urlB+"/api/v1/token", login); status != http.StatusOK {
		t.Fatalf("B checking a captcha drawn by A: %d %v, want 200", status, body)
	}
	for i, box := range []string{urlB, urlA} {
		status, body := postJSON(t, client, box+"/api/v1/token", login)
		if status != http.StatusUnprocessableEntity || !strings.Contains(fmt.Sprint(body), "captcha") {
			t.Fatalf("the same captcha again, on box %d: %d %v, want 422 on the captcha", i, status, body)
		}
	}
}

// drawSolved draws a captcha on box url and returns its key and answer.
func drawSolved(t *testing.T, c *etcdtest.Cluster, url, dir string) (key, answer string) {
	t.Helper()
	res, err := http.Get(url + "/api/v1/captcha")
	if err != nil {
		t.Fatal(err)
	}
	var drawn struct{ Key string }
	err = json.NewDecoder(res.Body).Decode(&drawn)
	res.Body.Close()
	if err != nil || drawn.Key == "" {
		t.Fatalf("captcha from %s: %v %+v", url, err, drawn)
	}
	return drawn.Key, captchaDigits(t, c, dir, drawn.Key)
}

// TestSiteCaptchaGrace: after a 419 (session limit) on box A, the retry
// that ends a session may go to box B with the 419's key and no new
// captcha, once.
func TestSiteCaptchaGrace(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	urlA, dirA, _ := captchaBox(t, c)
	urlB, _, _ := captchaBox(t, c)
	code, out, errOut := cli(t, envOf("VMSAUTH_BCRYPT_COST", "4"), "camera-pass\n",
		"user", "add", "--data", dirA, "--login", "cam1", "--api", "client")
	if code != 0 {
		t.Fatalf("user add through box A exited %d: %s%s", code, out, errOut)
	}
	// Five sessions (the default limit), then a 419, all on box A, each
	// login from another client.
	var status int
	var body map[string]any
	for i := range 6 {
		key, answer := drawSolved(t, c, urlA, dirA)
		status, body = postJSON(t, from(fmt.Sprintf("127.0.3.%d", i+1)), urlA+"/api/v1/token",
			fmt.Sprintf(`{"login":"cam1","password":"camera-pass","session_id":"null","key":%q,"captcha":%q}`, key, answer))
		if i < 5 && status != http.StatusOK {
			t.Fatalf("login %d: %d %v", i+1, status, body)
		}
	}
	if status != 419 {
		t.Fatalf("the 6th login: %d %v, want 419", status, body)
	}
	key, _ := body["key"].(string)
	sessions, _ := body["sessions"].([]any)
	if key == "" || len(sessions) != 5 {
		t.Fatalf("419 without a key or the sessions: %v", body)
	}
	sid, _ := sessions[0].(map[string]any)["id"].(string)
	retry := fmt.Sprintf(`{"login":"cam1","password":"camera-pass","session_id":%q,"key":%q}`, sid, key)
	if status, body := postJSON(t, from("127.0.3.100"), urlB+"/api/v1/token", retry); status != http.StatusOK {
		t.Fatalf("the retry on box B with the 419's key: %d %v, want 200", status, body)
	}
	// Spent: a second retry (ending another session) needs a captcha.
	sid, _ = sessions[1].(map[string]any)["id"].(string)
	retry = fmt.Sprintf(`{"login":"cam1","password":"camera-pass","session_id":%q,"key":%q}`, sid, key)
	if status, body := postJSON(t, from("127.0.3.101"), urlA+"/api/v1/token", retry); status != http.StatusUnprocessableEntity {
		t.Fatalf("a second retry with a spent grace, on box A: %d %v, want 422", status, body)
	}
}
