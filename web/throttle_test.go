package web_test

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"vmsauth/auth"
	"vmsauth/web"
)

// roomy raises the login throttle's limits, for tests about other things
// that make many logins.
func roomy(a *auth.Config, w *web.Options) {
	w.Throttle = auth.NewThrottle(auth.ThrottleConfig{IPLimit: 1000, LoginLimit: 1000, Now: a.Now})
}

func wantThrottle(t *testing.T, r response, now time.Time, retry int) {
	t.Helper()
	wantStatus(t, r, http.StatusTooManyRequests)
	if got := r.Header.Get("Retry-After"); got != strconv.Itoa(retry) {
		t.Errorf("Retry-After = %q, want %d", got, retry)
	}
	if got := r.Header.Get("X-RateLimit-Reset"); got != strconv.FormatInt(now.Add(time.Duration(retry)*time.Second).Unix(), 10) {
		t.Errorf("X-RateLimit-Reset = %q", got)
	}
}

func TestThrottleEachAPI(t *testing.T) {
	for _, tt := range []struct {
		name, path, body, want string
	}{
		{"Client", "/api/v1/token", `{"login":"alice","password":"password1"}`, `{"message":"Too Many Attempts."}`},
		{"Admin", "/api/admin/v1/auth/token", `{"login":"alice","password":"password1"}`, `{"message":"Too Many Attempts."}`},
		{"Integration", "/v1/login_check", `{"username":"alice","password":"password1"}`, `{"errors":[{"error":429,"message":"Too Many Attempts."}]}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, guarded(false))
			u := e.addUser("alice", auth.AllAPIs)
			if _, err := e.DB.UpdateUser(u.ID, func(u *auth.User) ([]auth.API, error) { u.SessionsLimit = 100; return nil, nil }); err != nil {
				t.Fatal(err)
			}
			for i := range 10 {
				r := e.do("POST", tt.path, tt.body)
				wantStatus(t, r, http.StatusOK) // successes count per IP too
				if r.Header.Get("X-RateLimit-Limit") != "10" || r.Header.Get("X-RateLimit-Remaining") != strconv.Itoa(9-i) {
					t.Fatalf("request %d: limit %q remaining %q", i+1, r.Header.Get("X-RateLimit-Limit"), r.Header.Get("X-RateLimit-Remaining"))
				}
				e.Clock.Advance(time.Second)
			}
			r := e.do("POST", tt.path, tt.body)
			wantThrottle(t, r, e.Clock.Now(), 590)
			if string(r.Body) != tt.want {
				t.Fatalf("body %s, want %s", r.Body, tt.want)
			}
			// A malformed request is refused too: throttling comes first.
			wantStatus(t, e.do("POST", tt.path, "{"), http.StatusTooManyRequests)
			e.Clock.Advance(590 * time.Second)
			wantStatus(t, e.do("POST", tt.path, tt.body), http.StatusOK)
		})
	}
}

func TestThrottleSharedAcrossAPIs(t *testing.T) {
	e := newEnv(t, guarded(false))
	e.addUser("alice", auth.AllAPIs)
	for range 5 {
		e.do("POST", "/api/v1/token", `{"login":"alice","password":"password1"}`)
		e.do("POST", "/api/admin/v1/auth/token", `{"login":"alice","password":"password1"}`)
	}
	r := e.do("POST", "/v1/login_check", `{"username":"alice","password":"password1"}`)
	wantStatus(t, r, http.StatusTooManyRequests)
}

func TestThrottlePerLogin(t *testing.T) {
	// Guesses come through a trusted proxy from ten addresses.
	e := newEnv(t, guarded(false, "127.0.0.1/32"))
	e.addUser("alice", auth.AllAPIs)
	for i := range 10 {
		r := e.do("POST", "/api/v1/token", `{"login":"alice","password":"wrong-password"}`, "X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i))
		wantStatus(t, r, http.StatusUnprocessableEntity)
	}
	e.Clock.Advance(time.Minute)
	// Even the right password, from a fresh address, on another API.
	r := e.do("POST", "/api/admin/v1/auth/token", `{"login":"ALICE","password":"password1"}`, "X-Forwarded-For", "203.0.113.7")
	wantThrottle(t, r, e.Clock.Now(), 540)
	r = e.do("POST", "/v1/login_check", `{"username":"alice","password":"password1"}`, "X-Forwarded-For", "203.0.113.8")
	wantStatus(t, r, http.StatusTooManyRequests)
	e.Clock.Advance(9 * time.Minute)
	r = e.do("POST", "/api/v1/token", `{"login":"alice","password":"password1"}`, "X-Forwarded-For", "203.0.113.9")
	wantStatus(t, r, http.StatusOK)
}

func TestThrottleClientIP(t *testing.T) {
	t.Run("SpoofedForwardedForIgnored", func(t *testing.T) {
		e := newEnv(t, guarded(false))
		for i := range 10 {
			e.do("POST", "/api/v1/token", `{}`, "X-Forwarded-For", fmt.Sprintf("192.0.2.%d", i))
		}
		r := e.do("POST", "/api/v1/token", `{}`, "X-Forwarded-For", "192.0.2.200")
		wantStatus(t, r, http.StatusTooManyRequests)
	})
	t.Run("TrustedProxy", func(t *testing.T) {
		e := newEnv(t, guarded(false, "127.0.0.1/32"))
		for range 10 {
			e.do("POST", "/api/v1/token", `{}`, "X-Forwarded-For", "192.0.2.1")
		}
		wantStatus(t, e.do("POST", "/api/v1/token", `{}`, "X-Forwarded-For", "192.0.2.1"), http.StatusTooManyRequests)
		wantStatus(t, e.do("POST", "/api/v1/token", `{}`, "X-Forwarded-For", "192.0.2.2"), http.StatusUnprocessableEntity)
		// The client cannot prepend its own entry: the rightmost address
		// that is not a trusted proxy is the one counted.
		wantStatus(t, e.do("POST", "/api/v1/token", `{}`, "X-Forwarded-For", "192.0.2.99, 192.0.2.1"), http.StatusTooManyRequests)
	})
}

func TestThrottleRussian(t *testing.T) {
	e := newEnv(t, guarded(false))
	for range 10 {
		e.do("POST", "/api/v1/token", `{}`)
	}
	r := e.do("POST", "/api/v1/token", `{}`, "Hl", "ru")
	if r.Status != http.StatusTooManyRequests || !strings.Contains(string(r.Body), "Слишком много попыток.") {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
}
