package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"vmsauth/internal/testkit"
)

// SPEC §8: every write that answers 200 is on disk before the answer, so
// kill -9 loses nothing acknowledged. These tests run the real binary, log
// in on all three APIs from many goroutines, SIGKILL the process while
// logins are in flight, start it again on the same data directory, and
// check every token that was answered 200.
//
// SIGKILL ends the process but not the kernel: what the process wrote is
// kept even without fsync. So this catches answers sent before the commit
// (or from a write that never commits), not a missing fsync; that needs a
// power cut, which a test cannot make.

// Durability run sizes: three kills, each after at least 500 acknowledged
// logins (1500 in all, spread over the three APIs and two users), with 16
// logins in flight.
const (
	durableRounds         = 3
	durableLoginsPerRound = 500
	durableWorkers        = 16
	durablePassword       = "durable-password"
)

// durableProc is one "vmsauth serve" process.
type durableProc struct {
	url  string
	cmd  *exec.Cmd
	out  *testkit.LogBuffer
	done chan error
}

// startDurable runs "vmsauth serve" on dir with throttling opened wide:
// these tests make hundreds of logins from one address. Unlike
// startProcess, it leaves the process to be SIGKILLed by the test, and
// keeps its output for failure messages.
func startDurable(t *testing.T, dir string) *durableProc {
	t.Helper()
	// The IP limit must hold every login of one process's life. The login
	// limit counts only failures, and there should be none.
	cmd := exec.Command(binary(t), "serve", "--data", dir, "--listen", "127.0.0.1:0", "--insecure-http",
		"--throttle-ip-limit", "100000", "--throttle-login-limit", "1000")
	cmd.Env = procEnv()
	p := &durableProc{cmd: cmd, out: &testkit.LogBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if p.running() {
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				<-p.done
			}
		}
	})
	deadline := time.After(30 * time.Second)
	for {
		if m := listenRE.FindStringSubmatch(p.out.String()); m != nil {
			p.url = m[1]
			return p
		}
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("serve exited (%v):\n%s", err, p.out)
		case <-deadline:
			t.Fatalf("serve did not start:\n%s", p.out)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// running reports whether the process has not exited yet.
func (p *durableProc) running() bool {
	select {
	case err := <-p.done:
		p.done <- err
		return false
	default:
		return true
	}
}

// kill SIGKILLs the process and waits for it to die.
func (p *durableProc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	err := <-p.done
	p.done <- err
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("serve did not die of SIGKILL: %v\n%s", err, p.out)
	}
}

// tail returns the end of the process's output, for failure messages.
func (p *durableProc) tail() string {
	s := p.out.String()
	if len(s) > 4000 {
		s = "..." + s[len(s)-4000:]
	}
	return s
}

// ackedLogin is a login the service answered 200.
type ackedLogin struct {
	api, login   string
	token        string
	refreshToken string // integration only
}

// durableLogin is one login request of the given API.
func durableLogin(client *http.Client, url, api, login string) (*ackedLogin, int, error) {
	path, body := "/api/v1/token", fmt.Sprintf(`{"login":%q,"password":%q}`, login, durablePassword)
	switch api {
	case "admin":
		path = "/api/admin/v1/auth/token"
	case "integration":
		path, body = "/v1/login_check", fmt.Sprintf(`{"username":%q,"password":%q}`, login, durablePassword)
	}
	res, err := client.Post(url+path, "application/json", strings.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		// Cut off mid-answer: not acknowledged.
		return nil, 0, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, res.StatusCode, fmt.Errorf("%s login: %d %s", api, res.StatusCode, b)
	}
	var v struct {
		AccessToken  string `json:"access_token"`
		Token        string `json:"token"`
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, res.StatusCode, fmt.Errorf("%s login: %v: %s", api, err, b)
	}
	a := &ackedLogin{api: api, login: login, token: v.AccessToken, refreshToken: v.RefreshToken}
	if api == "integration" {
		a.token = v.Token
	}
	if a.token == "" {
		return nil, res.StatusCode, fmt.Errorf("%s login: 200 without a token: %s", api, b)
	}
	return a, res.StatusCode, nil
}

// loginUntilKilled logs in from many goroutines, round robin over the
// APIs and users, and SIGKILLs p once at least n logins were answered
// 200, while the others are still in flight. It returns every login
// answered 200.
func loginUntilKilled(t *testing.T, p *durableProc, users []string, n int) []*ackedLogin {
	t.Helper()
	client := &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: durableWorkers},
		Timeout:   20 * time.Second,
	}
	defer client.CloseIdleConnections()
	apis := []string{"client", "admin", "integration"}
	var (
		seq, acked atomic.Int64
		mu         sync.Mutex
		all        []*ackedLogin
		failures   []string
		cutOff     atomic.Int64 // requests ended by the kill
		killed     atomic.Bool
		wg         sync.WaitGroup
	)
	enough := make(chan struct{})
	var enoughOnce sync.Once
	for range durableWorkers {
		wg.Go(func() {
			for p.running() {
				k := seq.Add(1)
				api, login := apis[k%3], users[(k/3)%int64(len(users))]
				a, status, err := durableLogin(client, p.url, api, login)
				switch {
				case err != nil && status == 0 && killed.Load():
					// Cut off by the kill: not acknowledged.
					cutOff.Add(1)
					return
				case err != nil:
					mu.Lock()
					failures = append(failures, err.Error())
					mu.Unlock()
					return
				}
				mu.Lock()
				all = append(all, a)
				mu.Unlock()
				if acked.Add(1) >= int64(n) {
					enoughOnce.Do(func() { close(enough) })
				}
			}
		})
	}
	stopped := make(chan struct{})
	go func() { wg.Wait(); close(stopped) }()
	select {
	case <-enough:
	case <-stopped:
		// Every worker failed; the failures are reported below.
	case <-time.After(60 * time.Second):
		t.Errorf("only %d of %d logins answered 200 in 60 s", acked.Load(), n)
	}
	// Kill while the workers are still sending.
	killed.Store(true)
	p.kill(t)
	<-stopped
	if len(failures) > 0 {
		t.Fatalf("%d logins failed, first: %s\n%s", len(failures), failures[0], p.tail())
	}
	t.Logf("%d logins answered 200 before SIGKILL; %d requests cut off by it", len(all), cutOff.Load())
	return all
}

// checkAcked checks that every acknowledged token still authenticates,
// as its own API and user.
func checkAcked(t *testing.T, url string, acked []*ackedLogin) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}, Timeout: 20 * time.Second}
	defer client.CloseIdleConnections()
	var (
		mu   sync.Mutex
		lost []string
		wg   sync.WaitGroup
	)
	next := make(chan *ackedLogin)
	for range 8 {
		wg.Go(func() {
			for a := range next {
				if why := verifyToken(client, url, a); why != "" {
					mu.Lock()
					lost = append(lost, why)
					mu.Unlock()
				}
			}
		})
	}
	for _, a := range acked {
		next <- a
	}
	close(next)
	wg.Wait()
	if len(lost) > 0 {
		t.Fatalf("%d of %d acknowledged logins lost after kill -9 and restart; first: %s", len(lost), len(acked), lost[0])
	}
}

// verifyToken asks /auth/verify about a's token; "" means it is live and
// belongs to a's API and user.
func verifyToken(client *http.Client, url string, a *ackedLogin) string {
	req, err := http.NewRequest("GET", url+"/auth/verify?api="+a.api, nil)
	if err != nil {
		return err.Error()
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	res, err := client.Do(req)
	if err != nil {
		return fmt.Sprintf("%s token of %s: %v", a.api, a.login, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || res.Header.Get("X-Auth-Login") != a.login || res.Header.Get("X-Auth-Realm") != a.api {
		return fmt.Sprintf("%s token of %s: %d (login %q, realm %q) %s", a.api, a.login, res.StatusCode,
			res.Header.Get("X-Auth-Login"), res.Header.Get("X-Auth-Realm"), b)
	}
	return ""
}

func TestDurabilityKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary, and kills it")
	}
	start := time.Now()
	dir := t.TempDir()
	users := []string{"durable1", "durable2"}
	for _, u := range users {
		// Client sessions are limited per user; the default 5 would turn
		// most client logins into 419s.
		code, out := vmsauth(t, durablePassword+"\n", "user", "add", "--data", dir, "--login", u,
			"--api", "client,admin,integration", "--sessions-limit", "1000")
		if code != 0 {
			t.Fatalf("user add %s: %d %s", u, code, out)
		}
	}

	var acked []*ackedLogin
	for round := 1; round <= durableRounds; round++ {
		p := startDurable(t, dir)
		// What earlier rounds acknowledged survived their kill.
		checkAcked(t, p.url, acked)
		acked = append(acked, loginUntilKilled(t, p, users, durableLoginsPerRound)...)
		if err := checkDatabase(filepath.Join(dir, databaseFile)); err != nil {
			t.Fatalf("after kill -9 in round %d the database fails its check: %v", round, err)
		}
	}

	p := startDurable(t, dir)
	checkAcked(t, p.url, acked)
	perAPI := map[string]int{}
	for _, a := range acked {
		perAPI[a.api]++
	}
	if len(acked) < 1000 || perAPI["client"] == 0 || perAPI["admin"] == 0 || perAPI["integration"] == 0 {
		t.Fatalf("only %d acknowledged logins (%v); the test wants at least 1000 over all three APIs", len(acked), perAPI)
	}

	// Refresh tokens were stored with their logins: a few of them, from
	// each round, still trade for a new pair. (Each works once, so this
	// comes after every check of the access tokens.)
	var integration []*ackedLogin
	for _, a := range acked {
		if a.api == "integration" {
			integration = append(integration, a)
		}
	}
	client := &http.Client{Timeout: 20 * time.Second}
	step := max(1, len(integration)/10)
	for i := 0; i < len(integration); i += step {
		res, err := client.Post(p.url+"/v1/token/refresh", "application/json",
			strings.NewReader(fmt.Sprintf(`{"refresh_token":%q}`, integration[i].refreshToken)))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("refresh token of an acknowledged login after kill -9: %d %s", res.StatusCode, b)
		}
	}
	t.Logf("%d acknowledged logins (%v) over %d kills all survived, in %v", len(acked), perAPI, durableRounds, time.Since(start).Round(time.Millisecond))
}
