package web_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"vmsauth/auth"
)

// Seed 001: the admin API, POST /api/admin/v1/auth/token, and the
// endpoints its token opens.

const msgNoAdmin = "This account has no access to the admin panel."

// adminUserKeys are seed 001's user fields.
var adminUserKeys = []string{"id", "name", "login", "created_at", "updated_at", "expired_at",
	"is_licence_limit_reached", "permissions", "ptz_priority", "admin_camera_groups",
	"dhcp_subnet_groups", "access_token_id"}

func TestAdminLogin(t *testing.T) {
	lastYear := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	required := map[string][]string{"login": {"The login field is required."}, "password": {"The password field is required."}}
	tests := []struct {
		name    string
		body    any
		headers []string
		errs    map[string][]string // a 422 with exactly these errors, or
		status  int                 // this status
		want    string              // with exactly this body, if set
	}{
		{name: "OK", body: creds("admin", "password1"), status: http.StatusOK},
		{name: "OKUnknownFieldsIgnored", body: map[string]any{"login": "admin", "password": "password1", "rememberMe": true}, status: http.StatusOK},
		{name: "ErrLoginMissing", body: map[string]any{"password": "password1"},
			errs: map[string][]string{"login": {"The login field is required."}}},
		{name: "ErrPasswordMissing", body: map[string]any{"login": "admin"},
			errs: map[string][]string{"password": {"The password field is required."}}},
		{name: "ErrEmptyStrings", body: creds("", ""), errs: required},
		{name: "ErrEmptyBody", body: "", errs: required},
		{name: "ErrInvalidJSON", body: `{"login":`, errs: required},
		{name: "ErrLoginNumber", body: map[string]any{"login": 1, "password": "password1"},
			errs: map[string][]string{"login": {"The login must be a string."}}},
		{name: "ErrUnknownLogin", body: creds("mallory", "password1"), errs: map[string][]string{"login": {msgCredentials}}},
		{name: "ErrWrongPassword", body: creds("admin", "password2"), errs: map[string][]string{"login": {msgCredentials}}},
		{name: "ErrNoAdminAccess", body: creds("viewer", "password1"), status: http.StatusForbidden,
			want: `{"message":"` + msgNoAdmin + `"}`},
		{name: "ErrNoAdminAccessRussian", body: creds("viewer", "password1"), headers: []string{"Hl", "ru"}, status: http.StatusForbidden,
			want: `{"message":"У этой учётной записи нет доступа к панели администратора."}`},
		// A wrong password must not reveal that the account exists.
		{name: "ErrNoAdminAccessWrongPassword", body: creds("viewer", "password2"), errs: map[string][]string{"login": {msgCredentials}}},
		{name: "ErrDisabled", body: creds("off", "password1"), errs: map[string][]string{"login": {"This account is disabled."}}},
		{name: "ErrDisabledWrongPassword", body: creds("off", "password2"), errs: map[string][]string{"login": {msgCredentials}}},
		{name: "ErrExpired", body: creds("old", "password1"), errs: map[string][]string{"login": {"This account has expired."}}},
		{name: "ErrExpiredWrongPassword", body: creds("old", "password2"), errs: map[string][]string{"login": {msgCredentials}}},
	}
	e := newEnv(t)
	admin := e.addUser("admin", adminAPI, "streams-update", "dhcp-subnets-destroy", "servers-update")
	e.addUser("viewer", []auth.API{auth.APIClient, auth.APIIntegration})
	e.addUserWith("off", adminAPI, func(u *auth.User) { u.Disabled = true })
	e.addUserWith("old", adminAPI, func(u *auth.User) { u.ExpiredAt = &lastYear })

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := e.withT(t)
			r := e.do("POST", "/api/admin/v1/auth/token", tc.body, tc.headers...)
			switch {
			case tc.errs != nil:
				wantInvalid(t, r, tc.errs)
			case tc.want != "":
				wantJSON(t, r, tc.status, tc.want)
			default:
				wantStatus(t, r, tc.status)
			}
			if tc.status == http.StatusOK {
				checkAdminLogin(t, e, r, admin)
			}
		})
	}
}

// checkAdminLogin checks seed 001's 200 answer for the user set up in
// TestAdminLogin.
func checkAdminLogin(t *testing.T, e *env, r response, admin *auth.User) {
	t.Helper()
	body := r.JSON(t)
	wantKeys(t, "body", body, "user", "expires_at", "token_type", "access_token")
	tok, _ := body["access_token"].(string)
	if tok == "" {
		t.Fatalf("access_token = %#v", body["access_token"])
	}
	if body["token_type"] != "Bearer" {
		t.Errorf("token_type = %#v, want Bearer", body["token_type"])
	}
	if want := stamp(e.Clock.Now().Add(12 * time.Hour)); body["expires_at"] != want {
		t.Errorf("expires_at = %#v, want %s (12 h on)", body["expires_at"], want)
	}
	user := object(t, "user", body["user"])
	wantKeys(t, "user", user, adminUserKeys...)
	sid := e.sessionOf(tok).ID
	if !sessionIDRE.MatchString(sid) || user["access_token_id"] != sid {
		t.Errorf("access_token_id = %#v, want the new session's %s", user["access_token_id"], sid)
	}
	delete(user, "access_token_id")
	want := map[string]any{
		"id": admin.ID, "name": "admin", "login": "admin",
		"created_at": stamp(admin.CreatedAt), "updated_at": stamp(admin.UpdatedAt),
		"expired_at": nil, "is_licence_limit_reached": false,
		// Seed 001's own example permissions, with its ids and words.
		"permissions": []map[string]any{
			{"id": 72, "name": "streams-update", "display_name": "Updating a video Stream", "group": "Video streams"},
			{"id": 115, "name": "dhcp-subnets-destroy", "display_name": "Deleting a DHCP network", "group": "DHCP subnets"},
			{"id": 120, "name": "servers-update", "display_name": "Updating a media server", "group": "Servers"},
		},
		"ptz_priority": 0, "admin_camera_groups": []any{}, "dhcp_subnet_groups": []any{},
	}
	wantJSONValue(t, "user", user, string(mustJSON(t, want)))
}

// The fields seed 001 shows filled in: camera groups, expiry, PTZ priority
// and the licence flag.
func TestAdminUserFields(t *testing.T) {
	e := newEnv(t, withLicenses(auth.License{Type: "analytic_l1", TypePretty: "LIC-XXXX-YY-L1", All: 100, Free: 0, Used: 100}))
	until := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	pretty := "Site / Cameras"
	admin := e.addUserWith("admin", adminAPI, func(u *auth.User) {
		u.Name = "Name"
		u.ExpiredAt = &until
		u.PTZPriority = 10
		u.CameraGroups = []auth.CameraGroup{{ID: 97, Name: "Cameras", FullPretty: &pretty, CamerasCount: 27, IntercomsCount: 315}}
		u.SubnetGroups = []auth.SubnetGroup{{ID: 3, Name: "Lobby"}}
	})
	tok, body := e.adminLogin("admin")
	r := e.do("GET", "/api/admin/v1/auth/user", nil, authz(tok)...)
	wantStatus(t, r, http.StatusOK)
	for name, user := range map[string]any{"login": body["user"], "auth/user": r.JSON(t)} {
		t.Run(strings.ReplaceAll(name, "/", "_"), func(t *testing.T) {
			u := object(t, "user", user)
			wantKeys(t, "user", u, adminUserKeys...)
			groups := list(t, "admin_camera_groups", u["admin_camera_groups"])
			if len(groups) != 1 {
				t.Fatalf("admin_camera_groups = %v, want one", groups)
			}
			wantKeys(t, "camera group", groups[0], "id", "name", "full_pretty", "is_house", "cameras_count", "parent_id", "csa_id", "intercoms_count")
			wantJSONValue(t, "camera group", groups[0],
				`{"id":97,"name":"Cameras","full_pretty":"Site / Cameras","is_house":0,"cameras_count":27,"parent_id":null,"csa_id":null,"intercoms_count":315}`)
			wantJSONValue(t, "dhcp_subnet_groups", u["dhcp_subnet_groups"], `[{"id":3,"name":"Lobby"}]`)
			if u["expired_at"] != stamp(until) || u["ptz_priority"] != 10.0 || u["name"] != "Name" || u["id"] != float64(admin.ID) {
				t.Errorf("expired_at, ptz_priority, name, id = %v, %v, %v, %v", u["expired_at"], u["ptz_priority"], u["name"], u["id"])
			}
			if u["is_licence_limit_reached"] != true {
				t.Errorf("is_licence_limit_reached = %v, want true: a pool has nothing free", u["is_licence_limit_reached"])
			}
			if u["access_token_id"] != e.sessionOf(tok).ID {
				t.Errorf("access_token_id = %v, want this session's", u["access_token_id"])
			}
		})
	}
}

func TestAdminTokenExpiry(t *testing.T) {
	e := newEnv(t)
	e.addUser("admin", adminAPI)
	tok, _ := e.adminLogin("admin")
	user := func() response { return e.do("GET", "/api/admin/v1/auth/user", nil, authz(tok)...) }
	e.Clock.Advance(12*time.Hour - time.Second)
	wantStatus(t, user(), http.StatusOK)
	e.Clock.Advance(time.Second)
	wantMessage(t, user(), http.StatusUnauthorized, msgUnauthenticated)
	// Use does not extend an admin token, unlike a client session.
	tok2, _ := e.adminLogin("admin")
	for range 12 {
		e.Clock.Advance(time.Hour - time.Second)
		wantStatus(t, e.do("GET", "/api/admin/v1/auth/user", nil, authz(tok2)...), http.StatusOK)
		e.Clock.Advance(time.Second)
	}
	wantStatus(t, e.do("GET", "/api/admin/v1/auth/user", nil, authz(tok2)...), http.StatusUnauthorized)
}

func TestAdminLogout(t *testing.T) {
	e := newEnv(t)
	e.addUser("admin", adminAPI)
	tok, _ := e.adminLogin("admin")
	other, _ := e.adminLogin("admin")
	wantJSON(t, e.do("POST", "/api/admin/v1/auth/logout", nil, authz(tok)...), http.StatusOK, `{"status":"ok"}`)
	wantMessage(t, e.do("GET", "/api/admin/v1/auth/user", nil, authz(tok)...), http.StatusUnauthorized, msgUnauthenticated)
	wantMessage(t, e.do("POST", "/api/admin/v1/auth/logout", nil, authz(tok)...), http.StatusUnauthorized, msgUnauthenticated)
	wantStatus(t, e.do("GET", "/api/admin/v1/auth/user", nil, authz(other)...), http.StatusOK)
	// Without a token.
	wantMessage(t, e.do("GET", "/api/admin/v1/auth/user", nil), http.StatusUnauthorized, msgUnauthenticated)
	wantMessage(t, e.do("GET", "/api/admin/v1/auth/user", nil, authz("garbage")...), http.StatusUnauthorized, msgUnauthenticated)
}

// A token is good only on the API that issued it.
func TestTokensStayInTheirAPI(t *testing.T) {
	e := newEnv(t)
	e.addUser("alice", allAPIs)
	client, _ := e.clientLogin("alice")
	admin, _ := e.adminLogin("alice")
	integration, _ := e.integrationLogin("alice")
	tokens := map[auth.API]string{auth.APIClient: client, auth.APIAdmin: admin, auth.APIIntegration: integration}
	endpoints := map[auth.API]struct{ method, path string }{
		auth.APIClient:      {"GET", "/api/v1/users/self"},
		auth.APIAdmin:       {"GET", "/api/admin/v1/auth/user"},
		auth.APIIntegration: {"GET", "/v1/me"},
	}
	for _, tokAPI := range auth.AllAPIs {
		for _, endAPI := range auth.AllAPIs {
			t.Run(string(tokAPI)+"TokenOn"+string(endAPI), func(t *testing.T) {
				ep := endpoints[endAPI]
				r := e.withT(t).do(ep.method, ep.path, nil, authz(tokens[tokAPI])...)
				switch {
				case tokAPI == endAPI:
					wantStatus(t, r, http.StatusOK)
				case endAPI == auth.APIIntegration:
					wantIntegrationError(t, r, http.StatusUnauthorized, 1007, "Your token is invalid.")
				default:
					wantMessage(t, r, http.StatusUnauthorized, msgUnauthenticated)
				}
			})
		}
	}
	// A client token cannot end admin sessions either.
	wantStatus(t, e.do("POST", "/api/admin/v1/auth/logout", nil, authz(client)...), http.StatusUnauthorized)
	wantStatus(t, e.do("POST", "/api/v1/logout", nil, authz(admin)...), http.StatusUnauthorized)
	wantStatus(t, e.do("GET", "/api/admin/v1/auth/user", nil, authz(admin)...), http.StatusOK)
}

func TestAdminRouting(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name, method, path string
		body               any
		status             int
		msg                string
	}{
		{"MethodNotAllowed", "GET", "/api/admin/v1/auth/token", nil, http.StatusMethodNotAllowed,
			"The GET method is not supported for this route. Supported methods: POST."},
		{"NotFound", "GET", "/api/admin/v1/nope", nil, http.StatusNotFound, "Not found."},
		{"BodyTooLarge", "POST", "/api/admin/v1/auth/token", `{"login":"` + strings.Repeat("a", 1<<20) + `"}`,
			http.StatusRequestEntityTooLarge, "The request body is too large."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantMessage(t, e.withT(t).do(tc.method, tc.path, tc.body), tc.status, tc.msg)
		})
	}
}
