package web_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"

	"vmsauth/auth"
	"vmsauth/store/storetest"
)

// outageStore answers as a site box's store does while its etcd cluster
// has no majority: every read it is asked for fails with ErrUnavailable.
type outageStore struct {
	storetest.Backend
	down atomic.Bool
}

func (o *outageStore) UserByLogin(ctx context.Context, login string) (*auth.User, error) {
	if o.down.Load() {
		return nil, auth.ErrUnavailable
	}
	return o.Backend.UserByLogin(ctx, login)
}

func (o *outageStore) SessionByHash(ctx context.Context, h auth.TokenHash) (*auth.Session, *auth.User, error) {
	if o.down.Load() {
		return nil, nil, auth.ErrUnavailable
	}
	return o.Backend.SessionByHash(ctx, h)
}

// TestStoreUnavailable checks the answers of a box whose store cannot
// answer: 503 in each API's own envelope (and so in openapi.json, which
// checks every exchange of this test), never a 500.
func TestStoreUnavailable(t *testing.T) {
	var st *outageStore
	e := newEnvOver(t, func(db storetest.Backend) auth.Store { st = &outageStore{Backend: db}; return st })
	e.addUser("alice", auth.AllAPIs)
	r := e.do("POST", "/v1/login_check", map[string]any{"username": "alice", "password": "password1"})
	wantStatus(t, r, http.StatusOK)
	token := r.JSON(t)["token"].(string)

	st.down.Store(true)
	laravel := `{"message":"Service Unavailable. Try again later."}`
	for _, tt := range []struct {
		name, method, path string
		body               any
		headers            []string
		want               string
	}{
		{"ClientLogin", "POST", "/api/v1/token", map[string]any{"login": "alice", "password": "password1"}, nil, laravel},
		{"AdminLogin", "POST", "/api/admin/v1/auth/token", map[string]any{"login": "alice", "password": "password1"}, nil, laravel},
		{"IntegrationLogin", "POST", "/v1/login_check", map[string]any{"username": "alice", "password": "password1"}, nil,
			`{"errors":[{"error":503,"message":"Service Unavailable. Try again later."}]}`},
		{"IntegrationMe", "GET", "/v1/me", nil, authz(token),
			`{"errors":[{"error":503,"message":"Service Unavailable. Try again later."}]}`},
		{"Verify", "GET", "/auth/verify", nil, authz(token), laravel},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(tt.method, tt.path, tt.body, tt.headers...)
			wantStatus(t, r, http.StatusServiceUnavailable)
			if string(r.Body) != tt.want {
				t.Fatalf("body %s, want %s", r.Body, tt.want)
			}
		})
	}
}
