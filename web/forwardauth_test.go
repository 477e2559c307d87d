package web_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"vmsauth/auth"
	"vmsauth/internal/testkit"
	"vmsauth/store"
	"vmsauth/web"
)

// TestForwardAuthHandler serves Handlers.ForwardAuth on a unix socket, as
// --forward-auth-listen does, beside the main handler.
func TestForwardAuthHandler(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), "vmsauth.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	svc, err := auth.New(db, auth.Config{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateUser(context.Background(), auth.Root, auth.NewUser{
		Login: "cam1", Password: "password1", APIs: []auth.API{auth.APIIntegration}, Permissions: []string{"archive-view"},
	}); err != nil {
		t.Fatal(err)
	}
	logs := &testkit.LogBuffer{}
	hs, err := web.NewHandlers(svc, web.Options{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	main := httptest.NewServer(checkContract(t, hs.Main))
	t.Cleanup(main.Close)
	sock := filepath.Join(t.TempDir(), "fa.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	fa := web.NewForwardAuthServer(hs.ForwardAuth)
	go fa.Serve(ln)
	t.Cleanup(func() { fa.Close() })
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}

	res, err := http.Post(main.URL+"/v1/login_check", "application/json", strings.NewReader(`{"username":"cam1","password":"password1"}`))
	if err != nil {
		t.Fatal(err)
	}
	tok := decodeToken(t, res)

	get := func(path, token string, headers ...string) (int, string, http.Header) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://vmsauth"+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b), res.Header
	}

	t.Run("OK", func(t *testing.T) {
		code, body, h := get("/auth/verify?permission=archive-view", tok, "X-Forwarded-For", "203.0.113.9")
		if code != 200 || body != "" || h.Get("Content-Length") != "0" ||
			h.Get("X-Auth-Login") != "cam1" || h.Get("X-Auth-Realm") != "integration" || h.Get("X-Auth-Permissions") != "archive-view" {
			t.Fatalf("%d %q %v", code, body, h)
		}
		// The same check on the main listener keeps its body.
		req, _ := http.NewRequest(http.MethodGet, main.URL+"/auth/verify?permission=archive-view", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || string(b) != `{"status":"ok"}` {
			t.Fatalf("main listener: %d %s", res.StatusCode, b)
		}
	})
	t.Run("ErrNoToken", func(t *testing.T) {
		if code, body, _ := get("/auth/verify", ""); code != 401 || body != `{"message":"Unauthenticated."}` {
			t.Fatalf("%d %s", code, body)
		}
	})
	t.Run("ErrNoPermission", func(t *testing.T) {
		if code, body, _ := get("/auth/verify?permission=users-view", tok); code != 403 || !strings.Contains(body, "message") {
			t.Fatalf("%d %s", code, body)
		}
	})
	t.Run("ErrIntegrationEnvelope", func(t *testing.T) {
		if code, body, _ := get("/auth/verify?api=integration", "not-a-token"); code != 401 || !strings.Contains(body, `"error":1007`) {
			t.Fatalf("%d %s", code, body)
		}
	})
	t.Run("OnlyTwoRoutes", func(t *testing.T) {
		if code, body, _ := get("/healthz", ""); code != 200 || body != `{"status":"ok"}` {
			t.Fatalf("healthz: %d %s", code, body)
		}
		for _, path := range []string{"/metrics", "/", "/api/v1/users/self", "/api/admin/v1/permissions", "/v1/me"} {
			if code, _, _ := get(path, tok); code != 404 {
				t.Errorf("GET %s: %d, want 404", path, code)
			}
		}
	})
	t.Run("LogNamesThePeer", func(t *testing.T) {
		// Over a unix socket Gin's ClientIP says "<nil>"; the log says what
		// the peer is, and no header can put an address there.
		out := logs.String()
		if !strings.Contains(out, `listener=forward-auth`) || !strings.Contains(out, `peer="unix socket"`) {
			t.Fatalf("no forward-auth request line naming the peer:\n%s", out)
		}
		if strings.Contains(out, "<nil>") || strings.Contains(out, "203.0.113.9") {
			t.Fatalf("the log has a made-up client address:\n%s", out)
		}
		if strings.Contains(out, tok) {
			t.Fatal("the log has the token")
		}
	})
}

func decodeToken(t *testing.T, res *http.Response) string {
	t.Helper()
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	_, rest, _ := strings.Cut(string(b), `"token":"`)
	tok, _, _ := strings.Cut(rest, `"`)
	if res.StatusCode != 200 || tok == "" {
		t.Fatalf("login: %d %s", res.StatusCode, b)
	}
	return tok
}
