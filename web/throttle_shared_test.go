package web_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"vmsauth/auth"
	"vmsauth/web"
)

// downCounters is a site's shared throttle counters while etcd has no
// majority: every call fails as an outage.
type downCounters struct{ calls atomic.Int64 }

func (d *downCounters) Update(context.Context, string, time.Duration, func([]int64) ([]int64, bool)) error {
	d.calls.Add(1)
	return fmt.Errorf("%w: etcd has no leader", auth.ErrUnavailable)
}

// TestSharedThrottleUnavailable: on a site box whose throttle counters are
// out of reach, every login answers 503 in its API's own envelope, before
// any password is tried (fail closed: no login passes uncounted), and the
// log says WARN, not ERROR.
func TestSharedThrottleUnavailable(t *testing.T) {
	var log bytes.Buffer
	down := &downCounters{}
	e := newEnv(t, withLog(&log), func(c *auth.Config, o *web.Options) {
		o.Throttle = auth.NewThrottle(auth.ThrottleConfig{Now: c.Now, Shared: down, HashKey: []byte("site")})
	})
	alice := e.addUser("alice", auth.AllAPIs)
	laravel := `{"message":"Service Unavailable. Try again later."}`
	for _, tt := range []struct{ name, path, body, want string }{
		{"ClientLogin", "/api/v1/token", `{"login":"alice","password":"password1"}`, laravel},
		{"AdminLogin", "/api/admin/v1/auth/token", `{"login":"alice","password":"password1"}`, laravel},
		{"IntegrationLogin", "/v1/login_check", `{"username":"alice","password":"password1"}`,
			`{"errors":[{"error":503,"message":"Service Unavailable. Try again later."}]}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := e.raw("POST", tt.path, tt.body, "Content-Type", "application/json")
			wantStatus(t, r, http.StatusServiceUnavailable)
			if string(r.Body) != tt.want {
				t.Fatalf("body %s, want %s", r.Body, tt.want)
			}
		})
	}
	if down.calls.Load() == 0 {
		t.Fatal("the logins never asked the shared counters")
	}
	if sessions, err := e.DB.UserSessions(t.Context(), alice.ID); err != nil || len(sessions) != 0 {
		t.Fatalf("a login made sessions without the site's counters: %v %v", sessions, err)
	}
	if strings.Contains(log.String(), "level=ERROR") {
		t.Fatalf("an outage of the shared counters logged at ERROR:\n%s", log.String())
	}
	if !strings.Contains(log.String(), "level=WARN") {
		t.Fatalf("the outage was not logged:\n%s", log.String())
	}
}
