package web_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"vmsauth/auth"
)

// adminToken logs an existing admin user in and returns the bearer header.
func (e *env) adminToken(login string) []string {
	e.t.Helper()
	r := e.do("POST", "/api/admin/v1/auth/token", map[string]string{"login": login, "password": "password1"})
	wantStatus(e.t, r, http.StatusOK)
	return []string{"Authorization", "Bearer " + r.JSON(e.t)["access_token"].(string)}
}

// TestUserEndpointsGuarded checks every user management endpoint against
// its permission: 403 without it, not 403 with it.
func TestUserEndpointsGuarded(t *testing.T) {
	e := newEnv(t)
	e.addUser("boss", []auth.API{auth.APIAdmin}, auth.AllPermissionNames()...)
	e.addUser("viewer", []auth.API{auth.APIAdmin}, "cameras-view")
	target := e.addUser("target", []auth.API{auth.APIClient})
	boss, viewer := e.adminToken("boss"), e.adminToken("viewer")
	tok, _ := e.clientLogin("target")
	sid := func() string {
		sessions, err := e.Svc.ClientSessions(t.Context(), target.ID)
		if err != nil || len(sessions) == 0 {
			t.Fatalf("target sessions: %v", err)
		}
		return sessions[0].ID
	}()
	id := fmt.Sprint(target.ID)

	for _, tt := range []struct {
		method, path string
		body         any
		permission   string
		status       int
	}{
		{"GET", "/api/admin/v1/users", nil, auth.PermUsersView, 200},
		{"GET", "/api/admin/v1/users/" + id, nil, auth.PermUsersView, 200},
		{"GET", "/api/admin/v1/users/" + id + "/sessions", nil, auth.PermSessionsView, 200},
		{"GET", "/api/admin/v1/permissions", nil, auth.PermPermissionsView, 200},
		{"POST", "/api/admin/v1/users", map[string]any{"login": "new1", "password": "password1"}, auth.PermUsersCreate, 201},
		{"PATCH", "/api/admin/v1/users/" + id, map[string]any{"name": "Target"}, auth.PermUsersUpdate, 200},
		{"DELETE", "/api/admin/v1/sessions/" + sid, nil, auth.PermSessionsDestroy, 200},
		{"POST", "/api/admin/v1/users/" + id + "/password", map[string]any{"password": "password2"}, auth.PermUsersUpdate, 200},
		{"DELETE", "/api/admin/v1/users/" + id, nil, auth.PermUsersDestroy, 200},
	} {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			r := e.do(tt.method, tt.path, tt.body, viewer...)
			wantStatus(t, r, http.StatusForbidden)
			if string(r.Body) != `{"message":"This action is unauthorized."}` {
				t.Fatalf("403 body %s", r.Body)
			}
			wantStatus(t, e.do(tt.method, tt.path, tt.body), http.StatusUnauthorized)
			wantStatus(t, e.do(tt.method, tt.path, tt.body, boss...), tt.status)
		})
	}
	// The session was ended above, and the user then deleted.
	wantStatus(t, e.do("GET", "/api/v1/users/self", nil, "Authorization", "Bearer "+tok), http.StatusUnauthorized)
	wantStatus(t, e.do("GET", "/api/admin/v1/users/"+id, nil, boss...), http.StatusNotFound)
}

func TestUserManagement(t *testing.T) {
	e := newEnv(t)
	e.addUser("boss", []auth.API{auth.APIAdmin}, auth.AllPermissionNames()...)
	other := e.addUser("other", []auth.API{auth.APIAdmin}, "cameras-view")
	h := e.adminToken("boss")

	t.Run("CreateAndLogIn", func(t *testing.T) {
		r := e.do("POST", "/api/admin/v1/users", map[string]any{
			"login": "cam7", "name": "Camera seven", "password": "cam7-password",
			"apis": []string{"client", "integration"}, "permissions": []string{"cameras-view", "archive-view"},
			"sessions_limit": 2, "ptz_priority": 7, "expired_at": "2030-05-01 10:00:00",
			"admin_camera_groups": []map[string]any{{"id": 97, "name": "Cameras", "cameras_count": 27}},
		}, h...)
		wantStatus(t, r, http.StatusCreated)
		u := r.JSON(t)
		if u["login"] != "cam7" || u["name"] != "Camera seven" || u["sessions_limit"] != float64(2) ||
			u["ptz_priority"] != float64(7) || u["expired_at"] != "2030-05-01 10:00:00" ||
			len(u["permissions"].([]any)) != 2 || len(u["admin_camera_groups"].([]any)) != 1 {
			t.Fatalf("created %s", r.Body)
		}
		wantStatus(t, e.do("POST", "/api/v1/token", map[string]string{"login": "cam7", "password": "cam7-password"}), http.StatusOK)
	})

	t.Run("Validation", func(t *testing.T) {
		for _, tt := range []struct {
			name, method, path string
			body               any
			field, text        string
		}{
			{"MissingLogin", "POST", "/api/admin/v1/users", map[string]any{"password": "password1"}, "login", "The login field is required."},
			{"TakenLogin", "POST", "/api/admin/v1/users", map[string]any{"login": "CAM7", "password": "password1"}, "login", "The login has already been taken."},
			{"ShortPassword", "POST", "/api/admin/v1/users", map[string]any{"login": "x1", "password": "short"}, "password", "at least 8"},
			{"UnknownAPI", "POST", "/api/admin/v1/users", map[string]any{"login": "x2", "password": "password1", "apis": []string{"ftp"}}, "apis", "invalid"},
			{"UnknownPermission", "POST", "/api/admin/v1/users", map[string]any{"login": "x3", "password": "password1", "permissions": []string{"fly"}}, "permissions", "fly"},
			{"LimitTooHigh", "PATCH", "/api/admin/v1/users/" + fmt.Sprint(other.ID), map[string]any{"sessions_limit": 5000}, "sessions_limit", "The sessions limit may not be greater than 1000."},
			{"LimitNotInteger", "PATCH", "/api/admin/v1/users/" + fmt.Sprint(other.ID), map[string]any{"sessions_limit": "many"}, "sessions_limit", "integer"},
			{"BadDate", "PATCH", "/api/admin/v1/users/" + fmt.Sprint(other.ID), map[string]any{"expired_at": "soon"}, "expired_at", "valid date"},
			{"PasswordMissing", "POST", "/api/admin/v1/users/" + fmt.Sprint(other.ID) + "/password", map[string]any{}, "password", "required"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				r := e.do(tt.method, tt.path, tt.body, h...)
				wantStatus(t, r, http.StatusUnprocessableEntity)
				errs := r.JSON(t)["errors"].(map[string]any)
				if got := fmt.Sprint(errs[tt.field]); !strings.Contains(got, tt.text) {
					t.Fatalf("errors.%s = %s, want %q (body %s)", tt.field, got, tt.text, r.Body)
				}
			})
		}
		// Nothing above changed the user.
		u, err := e.Svc.User(t.Context(), other.ID)
		if err != nil || u.SessionsLimit != 0 || u.ExpiredAt != nil {
			t.Fatalf("user after refused changes: %+v %v", u, err)
		}
	})

	t.Run("DisableEndsSessionsAndEnable", func(t *testing.T) {
		u, _ := e.Svc.UserByLogin(t.Context(), "cam7")
		camLogin := func() response {
			return e.do("POST", "/api/v1/token", map[string]string{"login": "cam7", "password": "cam7-password"})
		}
		r := camLogin()
		wantStatus(t, r, http.StatusOK)
		tok := r.JSON(t)["access_token"].(string)
		r = e.do("PATCH", fmt.Sprintf("/api/admin/v1/users/%d", u.ID), map[string]any{"disabled": true}, h...)
		wantStatus(t, r, http.StatusOK)
		if r.JSON(t)["disabled"] != true {
			t.Fatalf("patch answer %s", r.Body)
		}
		wantStatus(t, e.do("GET", "/api/v1/users/self", nil, "Authorization", "Bearer "+tok), http.StatusUnauthorized)
		r = camLogin()
		wantStatus(t, r, http.StatusUnprocessableEntity)
		if !strings.Contains(string(r.Body), "This account is disabled.") {
			t.Fatalf("disabled login: %s", r.Body)
		}
		wantStatus(t, e.do("PATCH", fmt.Sprintf("/api/admin/v1/users/%d", u.ID), map[string]any{"disabled": false}, h...), http.StatusOK)
		wantStatus(t, camLogin(), http.StatusOK)
	})

	t.Run("SessionsListAndEnd", func(t *testing.T) {
		u, _ := e.Svc.UserByLogin(t.Context(), "cam7")
		path := fmt.Sprintf("/api/admin/v1/users/%d/sessions", u.ID)
		r := e.do("GET", path, nil, h...)
		wantStatus(t, r, http.StatusOK)
		var list []map[string]any
		if err := jsonUnmarshal(r.Body, &list); err != nil || len(list) == 0 {
			t.Fatalf("sessions %s", r.Body)
		}
		for _, k := range []string{"id", "api", "client", "ip", "last", "online", "user_agent", "created_at", "expires_at"} {
			if _, ok := list[0][k]; !ok {
				t.Fatalf("session lacks %s: %v", k, list[0])
			}
		}
		wantStatus(t, e.do("DELETE", "/api/admin/v1/sessions/"+list[0]["id"].(string), nil, h...), http.StatusOK)
		wantStatus(t, e.do("DELETE", "/api/admin/v1/sessions/"+list[0]["id"].(string), nil, h...), http.StatusNotFound)
	})

	t.Run("ListSearchAndPaging", func(t *testing.T) {
		for i := range 5 {
			e.addUser(fmt.Sprintf("door%d", i), []auth.API{auth.APIClient})
		}
		r := e.do("GET", "/api/admin/v1/users?search=DOOR&per_page=2&page=2", nil, h...)
		wantStatus(t, r, http.StatusOK)
		body := r.JSON(t)
		data := body["data"].([]any)
		if body["total"] != float64(5) || body["last_page"] != float64(3) || body["current_page"] != float64(2) ||
			len(data) != 2 || data[0].(map[string]any)["login"] != "door2" {
			t.Fatalf("page %s", r.Body)
		}
	})

	t.Run("UnknownIDs", func(t *testing.T) {
		for _, p := range []string{"/api/admin/v1/users/999", "/api/admin/v1/users/abc", "/api/admin/v1/users/999/sessions"} {
			wantStatus(t, e.do("GET", p, nil, h...), http.StatusNotFound)
		}
		wantStatus(t, e.do("DELETE", "/api/admin/v1/sessions/nope", nil, h...), http.StatusNotFound)
	})

	t.Run("PermissionCatalog", func(t *testing.T) {
		r := e.do("GET", "/api/admin/v1/permissions", nil, h...)
		var list []auth.Permission
		if err := jsonUnmarshal(r.Body, &list); err != nil || len(list) != len(auth.Catalog) {
			t.Fatalf("catalog %s", r.Body)
		}
	})
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
