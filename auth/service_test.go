package auth_test

import (
	"context"
	"encoding/base64"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"vmsauth/auth"
	"vmsauth/internal/testkit"
	"vmsauth/store"
)

// newService returns rules over a real bbolt file and a movable clock.
func newService(t *testing.T, cost int) (*auth.Service, *store.DB, *testkit.Clock) {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "test.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clk := testkit.NewClock(time.Date(2026, 1, 10, 9, 0, 0, 0, time.UTC))
	svc, err := auth.New(db, auth.Config{BcryptCost: cost, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Wait) // rehashes end before the database closes
	return svc, db, clk
}

func mustCreate(t *testing.T, svc *auth.Service, n auth.NewUser) *auth.User {
	t.Helper()
	if n.Password == "" && n.PasswordHash == "" {
		n.Password = "password1"
	}
	if n.APIs == nil {
		n.APIs = auth.AllAPIs
	}
	u, err := svc.CreateUser(context.Background(), auth.Root, n)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func login(svc *auth.Service, api auth.API, user, pw string) (*auth.Issued, error) {
	return svc.Login(context.Background(), auth.LoginRequest{API: api, Login: user, Password: pw})
}

func TestLogin(t *testing.T) {
	svc, db, clk := newService(t, bcrypt.MinCost)
	mustCreate(t, svc, auth.NewUser{Login: "Alice"})
	long := strings.Repeat("p", auth.MaxPassword)
	mustCreate(t, svc, auth.NewUser{Login: "long", Password: long})
	mustCreate(t, svc, auth.NewUser{Login: "clientonly", APIs: []auth.API{auth.APIClient}})
	off := mustCreate(t, svc, auth.NewUser{Login: "off"})
	if _, err := svc.SetDisabled(auth.Root, off.ID, true); err != nil {
		t.Fatal(err)
	}
	past := clk.Now().Add(-time.Hour)
	mustCreate(t, svc, auth.NewUser{Login: "old", ExpiredAt: &past})

	tests := []struct {
		name      string
		api       auth.API
		login, pw string
		want      error
	}{
		{"OK", auth.APIClient, "Alice", "password1", nil},
		{"OKCaseInsensitiveLogin", auth.APIClient, "aLICE", "password1", nil},
		{"OK72Bytes", auth.APIClient, "long", long, nil},
		{"ErrBadCredentialsUnknownLogin", auth.APIClient, "bob", "password1", auth.ErrBadCredentials},
		{"ErrBadCredentialsWrongPassword", auth.APIClient, "alice", "password2", auth.ErrBadCredentials},
		// bcrypt compares only 72 bytes: a longer password sharing them must not match.
		{"ErrBadCredentialsPast72Bytes", auth.APIClient, "long", long + "x", auth.ErrBadCredentials},
		{"ErrAccountDisabled", auth.APIClient, "off", "password1", auth.ErrAccountDisabled},
		{"ErrAccountDisabledWrongPassword", auth.APIClient, "off", "nope-nope", auth.ErrBadCredentials},
		{"ErrAccountExpired", auth.APIAdmin, "old", "password1", auth.ErrAccountExpired},
		{"ErrNoAccess", auth.APIAdmin, "clientonly", "password1", auth.ErrNoAccess},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := login(svc, tt.api, tt.login, tt.pw)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err != nil {
				return
			}
			raw, err := base64.RawURLEncoding.DecodeString(got.Token)
			if err != nil || len(raw) < 32 {
				t.Fatalf("token %q is not 256 random bits", got.Token)
			}
			stored, err := db.Session(got.Session.ID)
			if err != nil {
				t.Fatal(err)
			}
			if stored.TokenHash != auth.HashToken(got.Token) {
				t.Fatal("stored session does not hold the token's hash")
			}
		})
	}
}

// TestDefaultCostLogin runs the one login at the real default cost.
func TestDefaultCostLogin(t *testing.T) {
	svc, _, _ := newService(t, 0)
	u := mustCreate(t, svc, auth.NewUser{Login: "real"})
	if cost, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil || cost != bcrypt.DefaultCost {
		t.Fatalf("hash cost = %d, %v; want the default %d", cost, err, bcrypt.DefaultCost)
	}
	if _, err := login(svc, auth.APIClient, "real", "password1"); err != nil {
		t.Fatal(err)
	}
	if _, err := login(svc, auth.APIClient, "ghost", "password1"); !errors.Is(err, auth.ErrBadCredentials) {
		t.Fatalf("unknown login: %v", err)
	}
}

func TestImportedHashes(t *testing.T) {
	svc, _, _ := newService(t, bcrypt.MinCost)
	h, err := bcrypt.GenerateFromPassword([]byte("imported-pw"), auth.MinImportCost)
	if err != nil {
		t.Fatal(err)
	}
	for _, prefix := range []string{"$2a$", "$2b$", "$2y$"} {
		t.Run(prefix, func(t *testing.T) {
			hash := prefix + string(h[4:])
			login := "user" + prefix[2:3]
			mustCreate(t, svc, auth.NewUser{Login: login, PasswordHash: hash})
			if _, err := svc.Login(context.Background(), auth.LoginRequest{API: auth.APIClient, Login: login, Password: "imported-pw"}); err != nil {
				t.Fatalf("login with %s hash: %v", prefix, err)
			}
		})
	}
	t.Run("ErrNotBcrypt", func(t *testing.T) {
		_, err := svc.CreateUser(context.Background(), auth.Root, auth.NewUser{Login: "md5", PasswordHash: "5f4dcc3b5aa765d61d8327deb882cf99"})
		wantField(t, err, "password_hash", "bcrypt")
	})
}

func wantField(t *testing.T, err error, field, code string) {
	t.Helper()
	var v *auth.ValidationError
	if !errors.As(err, &v) {
		t.Fatalf("err = %v, want a validation error", err)
	}
	for _, f := range v.Fields {
		if f.Field == field && f.Code == code {
			return
		}
	}
	t.Fatalf("err = %v, want %s %s", err, field, code)
}

func TestCreateUserValidation(t *testing.T) {
	svc, _, _ := newService(t, bcrypt.MinCost)
	mustCreate(t, svc, auth.NewUser{Login: "Taken"})
	tests := []struct {
		name        string
		n           auth.NewUser
		field, code string
	}{
		{"LoginRequired", auth.NewUser{Password: "password1"}, "login", "required"},
		{"LoginTakenAnyCase", auth.NewUser{Login: "TAKEN", Password: "password1"}, "login", "unique"},
		{"LoginWithSpace", auth.NewUser{Login: "a b", Password: "password1"}, "login", "login_chars"},
		{"PasswordRequired", auth.NewUser{Login: "p0"}, "password", "required"},
		{"Password7Bytes", auth.NewUser{Login: "p1", Password: "1234567"}, "password", "min_bytes"},
		{"Password73Bytes", auth.NewUser{Login: "p2", Password: strings.Repeat("x", 73)}, "password", "max_bytes"},
		{"UnknownAPI", auth.NewUser{Login: "p3", Password: "password1", APIs: []auth.API{"ftp"}}, "apis", "in"},
		{"UnknownPermission", auth.NewUser{Login: "p4", Password: "password1", Permissions: []string{"fly"}}, "permissions", "permission"},
		{"NegativeLimit", auth.NewUser{Login: "p5", Password: "password1", SessionsLimit: -1}, "sessions_limit", "min_value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := svc.CreateUser(context.Background(), auth.Root, tt.n)
			wantField(t, err, tt.field, tt.code)
		})
	}
	n, err := svc.Users()
	if err != nil || len(n) != 1 {
		t.Fatalf("users after refused creations = %d, %v; want 1", len(n), err)
	}
}

func TestSessionLimitAndReplace(t *testing.T) {
	svc, _, _ := newService(t, bcrypt.MinCost)
	u := mustCreate(t, svc, auth.NewUser{Login: "cam", SessionsLimit: 2})
	var first *auth.Issued
	for i := range 2 {
		got, err := login(svc, auth.APIClient, "cam", "password1")
		if err != nil {
			t.Fatalf("login %d: %v", i, err)
		}
		if first == nil {
			first = got
		}
	}
	_, err := login(svc, auth.APIClient, "cam", "password1")
	var limit *auth.SessionLimitError
	if !errors.As(err, &limit) || limit.Limit != 2 || len(limit.Sessions) != 2 {
		t.Fatalf("third login: %v, want a session limit error listing 2 sessions", err)
	}
	// Admin and integration tokens do not count against the client limit.
	if _, err := login(svc, auth.APIAdmin, "cam", "password1"); err != nil {
		t.Fatalf("admin login at the client limit: %v", err)
	}
	_, err = svc.Login(context.Background(), auth.LoginRequest{API: auth.APIClient, Login: "cam", Password: "password1", ReplaceSession: "nope"})
	if !errors.Is(err, auth.ErrSessionNotFound) {
		t.Fatalf("unknown replace: %v", err)
	}
	got, err := svc.Login(context.Background(), auth.LoginRequest{API: auth.APIClient, Login: "cam", Password: "password1", ReplaceSession: first.Session.ID})
	if err != nil {
		t.Fatalf("replace: %v", err)
	}
	if _, _, err := svc.Authenticate(first.Token, auth.APIClient, ""); !errors.Is(err, auth.ErrTokenInvalid) {
		t.Fatalf("replaced token: %v, want ErrTokenInvalid", err)
	}
	if _, _, err := svc.Authenticate(got.Token, auth.APIClient, ""); err != nil {
		t.Fatalf("new token: %v", err)
	}
	list, err := svc.ClientSessions(u.ID)
	if err != nil || len(list) != 2 {
		t.Fatalf("client sessions = %d, %v; want 2", len(list), err)
	}
}

func TestTokenLifetimes(t *testing.T) {
	svc, db, clk := newService(t, bcrypt.MinCost)
	mustCreate(t, svc, auth.NewUser{Login: "u"})
	issue := func(api auth.API) string {
		t.Helper()
		got, err := login(svc, api, "u", "password1")
		if err != nil {
			t.Fatal(err)
		}
		return got.Token
	}
	admin, integ, client, idle := issue(auth.APIAdmin), issue(auth.APIIntegration), issue(auth.APIClient), issue(auth.APIClient)

	check := func(tok string, api auth.API, want error) {
		t.Helper()
		if _, _, err := svc.Authenticate(tok, api, ""); !errors.Is(err, want) {
			t.Fatalf("%s token at %s: %v, want %v", api, clk.Now(), err, want)
		}
	}
	check(admin, auth.APIClient, auth.ErrTokenInvalid)
	check("", "", auth.ErrTokenMissing)
	check("garbage", "", auth.ErrTokenInvalid)

	clk.Advance(auth.DefaultAdminTTL - time.Second)
	check(admin, auth.APIAdmin, nil)
	check(client, auth.APIClient, nil) // use keeps a client session alive
	clk.Advance(time.Second)
	check(admin, auth.APIAdmin, auth.ErrTokenExpired)
	check(integ, auth.APIIntegration, nil)
	clk.Advance(auth.DefaultIntegrationTTL - auth.DefaultAdminTTL)
	check(integ, auth.APIIntegration, auth.ErrTokenExpired)

	// The idle session was last used at issue; the used one 12 h later.
	clk.Advance(auth.DefaultClientIdle - auth.DefaultIntegrationTTL)
	check(idle, auth.APIClient, auth.ErrTokenExpired)
	check(client, auth.APIClient, nil)

	// Activity is written at most once a minute per session.
	sess, _, err := svc.Authenticate(client, auth.APIClient, "")
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(30 * time.Second)
	if _, _, err := svc.Authenticate(client, auth.APIClient, ""); err != nil {
		t.Fatal(err)
	}
	stored, err := db.Session(sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !stored.LastSeen.Equal(sess.LastSeen) {
		t.Fatalf("last seen written after 30 s: %s, want %s", stored.LastSeen, sess.LastSeen)
	}
	clk.Advance(31 * time.Second)
	if _, _, err := svc.Authenticate(client, auth.APIClient, ""); err != nil {
		t.Fatal(err)
	}
	if stored, _ = db.Session(sess.ID); !stored.LastSeen.Equal(clk.Now()) {
		t.Fatalf("last seen after 61 s = %s, want %s", stored.LastSeen, clk.Now())
	}
}

func TestAccountChangesEndSessions(t *testing.T) {
	svc, _, _ := newService(t, bcrypt.MinCost)
	ctx := context.Background()
	for _, tt := range []struct {
		name   string
		change func(id int64) error
	}{
		{"SetPassword", func(id int64) error { _, err := svc.SetPassword(ctx, auth.Root, id, "new-password"); return err }},
		{"Disable", func(id int64) error { _, err := svc.SetDisabled(auth.Root, id, true); return err }},
		{"Delete", func(id int64) error { return svc.DeleteUser(auth.Root, id) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u := mustCreate(t, svc, auth.NewUser{Login: "victim-" + tt.name})
			var toks []string
			for _, api := range auth.AllAPIs {
				got, err := login(svc, api, u.Login, "password1")
				if err != nil {
					t.Fatal(err)
				}
				toks = append(toks, got.Token)
			}
			if err := tt.change(u.ID); err != nil {
				t.Fatal(err)
			}
			for _, tok := range toks {
				if _, _, err := svc.Authenticate(tok, "", ""); !errors.Is(err, auth.ErrTokenInvalid) {
					t.Fatalf("token after %s: %v, want ErrTokenInvalid", tt.name, err)
				}
			}
		})
	}
}

func TestRefresh(t *testing.T) {
	svc, _, clk := newService(t, bcrypt.MinCost)
	mustCreate(t, svc, auth.NewUser{Login: "int"})
	first, err := login(svc, auth.APIIntegration, "int", "password1")
	if err != nil {
		t.Fatal(err)
	}
	other, err := login(svc, auth.APIIntegration, "int", "password1")
	if err != nil {
		t.Fatal(err)
	}
	second, err := svc.Refresh(first.RefreshToken, auth.ClientMeta{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{first.Token, second.Token, other.Token} {
		if _, _, err := svc.Authenticate(tok, auth.APIIntegration, ""); err != nil {
			t.Fatalf("before reuse: %v", err)
		}
	}
	if _, err := svc.Refresh(first.RefreshToken, auth.ClientMeta{}); !errors.Is(err, auth.ErrRefreshReused) {
		t.Fatalf("reuse: %v, want ErrRefreshReused", err)
	}
	for _, tok := range []string{first.Token, second.Token} {
		if _, _, err := svc.Authenticate(tok, auth.APIIntegration, ""); !errors.Is(err, auth.ErrTokenInvalid) {
			t.Fatalf("chain token after reuse: %v, want ErrTokenInvalid", err)
		}
	}
	if _, err := svc.Refresh(second.RefreshToken, auth.ClientMeta{}); !errors.Is(err, auth.ErrTokenInvalid) {
		t.Fatalf("refresh of an ended chain: %v", err)
	}
	if _, _, err := svc.Authenticate(other.Token, auth.APIIntegration, ""); err != nil {
		t.Fatalf("token of another chain: %v", err)
	}
	clk.Advance(auth.DefaultRefreshTTL)
	if _, err := svc.Refresh(other.RefreshToken, auth.ClientMeta{}); !errors.Is(err, auth.ErrTokenExpired) {
		t.Fatalf("refresh after 30 days: %v, want ErrTokenExpired", err)
	}
}

func TestBootstrap(t *testing.T) {
	svc, _, _ := newService(t, bcrypt.MinCost)
	ctx := context.Background()
	created, err := svc.Bootstrap(ctx, "admin", "first-password")
	if err != nil || !created {
		t.Fatalf("first bootstrap: %v, %v", created, err)
	}
	u, err := svc.UserByLogin("admin")
	if err != nil {
		t.Fatal(err)
	}
	if len(u.APIs) != 3 || len(u.Permissions) != len(auth.Catalog) {
		t.Fatalf("first admin has %v and %d permissions", u.APIs, len(u.Permissions))
	}
	if created, err := svc.Bootstrap(ctx, "admin", "other-password"); err != nil || created {
		t.Fatalf("second bootstrap: %v, %v; want nothing done", created, err)
	}
	if _, err := login(svc, auth.APIAdmin, "admin", "first-password"); err != nil {
		t.Fatalf("first password no longer works: %v", err)
	}
}

func TestCatalog(t *testing.T) {
	ids, names := map[int]bool{}, map[string]bool{}
	for _, p := range auth.Catalog {
		if ids[p.ID] || names[p.Name] {
			t.Fatalf("duplicate permission %d %s", p.ID, p.Name)
		}
		ids[p.ID], names[p.Name] = true, true
		if p.DisplayName == "" || p.Group == "" {
			t.Fatalf("permission %s lacks a display name or group", p.Name)
		}
	}
	// Seed 001's examples keep their ids, names and texts.
	for _, want := range []auth.Permission{
		{ID: 72, Name: "streams-update", DisplayName: "Updating a video Stream", Group: "Video streams"},
		{ID: 115, Name: "dhcp-subnets-destroy", DisplayName: "Deleting a DHCP network", Group: "DHCP subnets"},
		{ID: 120, Name: "servers-update", DisplayName: "Updating a media server", Group: "Servers"},
	} {
		if got, ok := auth.LookupPermission(want.Name); !ok || got != want {
			t.Errorf("catalog has %+v, want %+v", got, want)
		}
	}
	for _, group := range []string{"Cameras", "Archive", "PTZ", "Users", "Servers", "Video streams", "DHCP subnets", "Intercoms", "Analytics"} {
		found := false
		for _, p := range auth.Catalog {
			found = found || p.Group == group
		}
		if !found {
			t.Errorf("no permission in group %q", group)
		}
	}
}
