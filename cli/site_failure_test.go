package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"vmsauth/etcd"
	"vmsauth/etcd/etcdtest"
	"vmsauth/etcdstore"
)

// loginBox is siteBox with the throttle's limits raised: every client of
// these tests comes from 127.0.0.1, a login refused for the session limit
// counts as a failure of its login, and the throttle is not what they test.
func loginBox(t *testing.T, c *etcdtest.Cluster) (url, dir string) {
	t.Helper()
	dir = t.TempDir()
	a, _ := startServe(t, envOf("VMSAUTH_BCRYPT_COST", "4", "VMSAUTH_ADMIN_PASSWORD", "admin-password"),
		"--data", dir, "--insecure-http", "--captcha=false", "--throttle-ip-limit", "100000", "--throttle-login-limit", "100000",
		"--etcd", strings.Join(c.Endpoints(), ","))
	return a.URL(), dir
}

// addSiteUser creates a client-API user through box's control socket.
func addSiteUser(t *testing.T, dir, login string, sessionsLimit int) {
	t.Helper()
	code, out, errOut := cli(t, envOf("VMSAUTH_BCRYPT_COST", "4"), "camera-pass\n", "user", "add", "--data", dir,
		"--login", login, "--api", "client", "--sessions-limit", fmt.Sprint(sessionsLimit))
	if code != 0 {
		t.Fatalf("user add: exit %d: %s%s", code, out, errOut)
	}
}

// leader returns the index of the cluster's leader.
func leader(t *testing.T, c *etcdtest.Cluster) int {
	t.Helper()
	ec, err := etcd.New(etcd.Config{Endpoints: c.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	for i, ep := range c.Endpoints() {
		st, err := ec.StatusOf(context.Background(), ep)
		if err == nil && st.Leader != 0 && st.Leader == st.Header.MemberID {
			return i
		}
	}
	t.Fatal("no member says it is the leader")
	return -1
}

// One member of three killed (the leader, for the election pause) during a
// stream of logins and logouts on two boxes: every answer is 200, or 503
// after the kill while etcd elects a new leader; never a 500, another code,
// or a request that hangs past the client's timeout. The longest gap
// between two successful logins is logged and must stay under 5 s.
func TestSiteMemberKilledDuringLogins(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	urlA, dirA := loginBox(t, c)
	urlB, _ := loginBox(t, c)
	addSiteUser(t, dirA, "cam1", 1000)
	client := &http.Client{Timeout: 10 * time.Second}

	var mu sync.Mutex
	var successes []time.Time
	var killedAt time.Time
	unavailable := 0
	// killed tells whether the kill came before an answer that arrived now.
	killed := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return !killedAt.IsZero()
	}
	stop := make(chan struct{})
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for i := range 4 {
		base := []string{urlA, urlB}[i%2]
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				status, body, err := tryPost(client, base+"/api/v1/token", `{"login":"cam1","password":"camera-pass"}`, "")
				at := time.Now()
				if err != nil {
					errs <- fmt.Errorf("login on %s: %v", base, err)
					return
				}
				afterKill := killed()
				mu.Lock()
				switch {
				case status == http.StatusOK:
					successes = append(successes, at)
				case status == http.StatusServiceUnavailable && afterKill:
					unavailable++
				}
				mu.Unlock()
				if status == http.StatusServiceUnavailable && afterKill {
					continue
				}
				if status != http.StatusOK {
					errs <- fmt.Errorf("login on %s answered %d %v (after the kill: %v)", base, status, body, afterKill)
					return
				}
				// Log out again, so that sessions do not pile up to the
				// user's limit; a 503 is fine here too after the kill.
				token, _ := body["access_token"].(string)
				status, _, err = tryPost(client, base+"/api/v1/logout", "", token)
				if err != nil || status != http.StatusOK && !(status == http.StatusServiceUnavailable && killed()) {
					errs <- fmt.Errorf("logout on %s: %d %v", base, status, err)
					return
				}
			}
		})
	}
	time.Sleep(2 * time.Second)
	victim := leader(t, c)
	mu.Lock()
	killedAt = time.Now()
	mu.Unlock()
	c.Kill(victim)
	select {
	case err := <-errs:
		close(stop)
		wg.Wait()
		t.Fatal(err)
	case <-time.After(6 * time.Second):
	}
	end := time.Now()
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}

	slices.SortFunc(successes, func(a, b time.Time) int { return a.Compare(b) })
	after := 0
	for _, at := range successes {
		if at.After(killedAt) {
			after++
		}
	}
	// The gaps between successes, and from the last one to the end of the
	// stream (logins that stopped for good are the longest gap of all).
	var gap time.Duration
	var gapAt time.Time
	points := append(successes, end)
	for i := 1; i < len(points); i++ {
		if d := points[i].Sub(points[i-1]); d > gap {
			gap, gapAt = d, points[i-1]
		}
	}
	t.Logf("leader m%d killed: %d logins succeeded (%d after the kill), %d answered 503; longest gap between successes %v, beginning %v after the kill (negative: before)",
		victim+1, len(successes), after, unavailable, gap.Round(time.Millisecond), gapAt.Sub(killedAt).Round(time.Millisecond))
	if after == 0 {
		t.Fatal("no login succeeded after the kill")
	}
	if gap > 5*time.Second {
		t.Fatalf("logins stopped for %v with one member of three dead", gap)
	}
}

// tryPost is postJSON that returns transport errors (a hang is one: the
// client's timeout) instead of failing the test from a goroutine.
func tryPost(client *http.Client, url, body, token string) (int, map[string]any, error) {
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	var v map[string]any
	if err := json.NewDecoder(res.Body).Decode(&v); err != nil {
		return res.StatusCode, nil, fmt.Errorf("HTTP %d, body not JSON: %v", res.StatusCode, err)
	}
	return res.StatusCode, v, nil
}

// 50 parallel logins of one user with a limit of 5 sessions, split over two
// boxes: exactly 5 succeed and the other 45 answer 419, and the site holds
// exactly 5 sessions of the user afterwards.
func TestSiteSessionLimitAcrossBoxes(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	urlA, dirA := loginBox(t, c)
	urlB, _ := loginBox(t, c)
	const limit = 5
	addSiteUser(t, dirA, "cam1", limit)
	client := &http.Client{Timeout: 10 * time.Second}

	codes := make([]int, 50)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range codes {
		base := []string{urlA, urlB}[i%2]
		wg.Go(func() {
			<-start
			status, body, err := tryPost(client, base+"/api/v1/token", `{"login":"cam1","password":"camera-pass"}`, "")
			if err != nil {
				t.Errorf("login %d: %v", i, err)
			}
			if status == 419 { // the client API's session limit
				if n, _ := body["sessions_count"].(float64); n != limit {
					t.Errorf("login %d: 419 with sessions_count %v, want %d", i, body["sessions_count"], limit)
				}
			}
			codes[i] = status
		})
	}
	close(start)
	wg.Wait()
	count := map[int]int{}
	for _, code := range codes {
		count[code]++
	}
	t.Logf("answers: %v", count)
	if count[http.StatusOK] != limit || count[419] != len(codes)-limit {
		t.Fatalf("50 parallel logins with a limit of %d: %v, want %d × 200 and %d × 419", limit, count, limit, len(codes)-limit)
	}

	st, err := etcdstore.Open(etcd.Config{Endpoints: c.Endpoints()}, etcdstore.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	u, err := st.UserByLogin(ctx, "cam1")
	if err != nil {
		t.Fatal(err)
	}
	sessions, err := st.UserSessions(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(sessions) != limit {
		t.Fatalf("the site holds %d sessions of cam1, want %d", len(sessions), limit)
	}
}
