package web_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"vmsauth/auth"
)

// techPerms is a technician's role: user management and a little more,
// far from every permission.
var techPerms = []string{
	auth.PermUsersView, auth.PermUsersCreate, auth.PermUsersUpdate, auth.PermUsersDestroy,
	auth.PermSessionsView, auth.PermSessionsDestroy, "cameras-view", "archive-view",
}

// authzFixture is a box with a first admin (every permission), two
// technicians of the same role, a camera user, and the issue's narrow
// roles; everyone holds a live session, and tech two.
type authzFixture struct {
	*env
	id      map[string]int64
	token   map[string]string // the bearer token each actor uses
	session map[string]string // a session of each user that is not the actor's own token
}

func newAuthzFixture(t *testing.T) *authzFixture {
	t.Helper()
	e := newEnv(t)
	f := &authzFixture{env: e, id: map[string]int64{}, token: map[string]string{}, session: map[string]string{}}
	for _, u := range []struct {
		login string
		apis  []auth.API
		perms []string
	}{
		{"admin", allAPIs, auth.AllPermissionNames()},
		{"tech", adminAPI, techPerms},
		{"peer", adminAPI, techPerms},
		{"cam", clientAPI, []string{"cameras-view"}},
		{"narrow", adminAPI, []string{auth.PermUsersView, auth.PermUsersUpdate}},
		{"creator", adminAPI, []string{auth.PermUsersCreate}},
	} {
		f.id[u.login] = e.addUser(u.login, u.apis, u.perms...).ID
		if u.login == "cam" {
			_, body := e.clientLogin("cam")
			f.session["cam"] = object(t, "user", body["user"])["access_token_id"].(string)
			continue
		}
		tok, _ := e.adminLogin(u.login)
		f.token[u.login] = tok
		_, body := e.adminLogin(u.login)
		f.session[u.login] = object(t, "user", body["user"])["access_token_id"].(string)
	}
	return f
}

// snapshot is every stored user and session, to tell whether a request
// changed anything.
func (f *authzFixture) snapshot(t *testing.T) string {
	t.Helper()
	users, err := f.DB.Users(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var all []any
	for _, u := range users {
		sessions, err := f.DB.UserSessions(t.Context(), u.ID)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, u, sessions)
	}
	return string(mustJSON(t, all))
}

// fieldChanges are PATCH bodies that each change one field of any user of
// the fixture (the permissions stay within a technician's role).
var fieldChanges = []struct {
	field string
	value any
}{
	{"name", "Renamed"},
	{"apis", []string{"client", "integration"}},
	{"permissions", []string{"cameras-view", "archive-view"}},
	{"sessions_limit", 3},
	{"ptz_priority", 7},
	{"expired_at", "2030-01-01 00:00:00"},
	{"disabled", true},
	{"can_update_password", false},
	{"admin_camera_groups", []map[string]any{{"id": 97, "name": "Gate"}}},
	{"dhcp_subnet_groups", []map[string]any{{"id": 3, "name": "Cameras"}}},
}

// authzCase is one request of actor and its expected answer. path may
// name users and sessions as {user} and {session:user}.
type authzCase struct {
	name   string
	actor  string
	method string
	path   func(f *authzFixture) string
	body   any
	status int
	// noop marks a success that changes nothing (a field sent as stored).
	noop bool
}

func user(login string, suffix ...string) func(f *authzFixture) string {
	return func(f *authzFixture) string {
		p := fmt.Sprintf("/api/admin/v1/users/%d", f.id[login])
		for _, s := range suffix {
			p += s
		}
		return p
	}
}

func sessionOf(login string) func(f *authzFixture) string {
	return func(f *authzFixture) string { return "/api/admin/v1/sessions/" + f.session[login] }
}

func users(*authzFixture) string { return "/api/admin/v1/users" }

// authzCases is the table of actor × target × action.
func authzCases() []authzCase {
	var cases []authzCase
	add := func(c authzCase) { cases = append(cases, c) }
	newUser := func(perms []string, apis ...string) map[string]any {
		if len(apis) == 0 {
			apis = []string{"client"}
		}
		return map[string]any{"login": "new1", "password": "password1", "apis": apis, "permissions": perms}
	}

	// Creating: only permissions one holds; any API.
	add(authzCase{"tech/create/subset", "tech", "POST", users, newUser([]string{"cameras-view"}), 201, false})
	add(authzCase{"tech/create/every-api", "tech", "POST", users, newUser(techPerms, "client", "admin", "integration"), 201, false})
	add(authzCase{"tech/create/same-role", "tech", "POST", users, newUser(techPerms, "admin"), 201, false})
	add(authzCase{"tech/create/foreign-permission", "tech", "POST", users, newUser([]string{"cameras-view", "servers-update"}), 403, false})
	add(authzCase{"tech/create/every-permission", "tech", "POST", users, newUser(auth.AllPermissionNames(), "admin"), 403, false})
	add(authzCase{"creator/create/every-permission", "creator", "POST", users, newUser(auth.AllPermissionNames(), "client", "admin", "integration"), 403, false})
	add(authzCase{"creator/create/no-permission", "creator", "POST", users, newUser(nil, "client"), 201, false})
	add(authzCase{"admin/create/every-permission", "admin", "POST", users, newUser(auth.AllPermissionNames(), "admin"), 201, false})

	// Updating each field.
	for _, fc := range fieldChanges {
		body := map[string]any{fc.field: fc.value}
		add(authzCase{"tech/patch-cam/" + fc.field, "tech", "PATCH", user("cam"), body, 200, false})
		add(authzCase{"tech/patch-peer/" + fc.field, "tech", "PATCH", user("peer"), body, 200, false})
		add(authzCase{"tech/patch-admin/" + fc.field, "tech", "PATCH", user("admin"), body, 403, false})
		selfStatus := 403
		if fc.field == "name" {
			selfStatus = 200
		}
		add(authzCase{"tech/patch-self/" + fc.field, "tech", "PATCH", user("tech"), body, selfStatus, false})
		add(authzCase{"admin/patch-tech/" + fc.field, "admin", "PATCH", user("tech"), body, 200, false})
		add(authzCase{"admin/patch-self/" + fc.field, "admin", "PATCH", user("admin"), body, selfStatus, false})
	}
	add(authzCase{"tech/patch-cam/foreign-permission", "tech", "PATCH", user("cam"), map[string]any{"permissions": []string{"cameras-view", "servers-update"}}, 403, false})
	add(authzCase{"tech/patch-peer/raise", "tech", "PATCH", user("peer"), map[string]any{"permissions": append(slices.Clone(techPerms), "servers-update")}, 403, false})
	add(authzCase{"tech/patch-peer/lower", "tech", "PATCH", user("peer"), map[string]any{"permissions": []string{"cameras-view"}}, 200, false})
	// Sent as stored is no change: a client may send a user back as it
	// read it. (A sessions limit reads as the default 5 when unset, but
	// storing 5 would pin it: that is a change.)
	add(authzCase{"tech/patch-self/as-stored", "tech", "PATCH", user("tech"), map[string]any{
		"permissions": techPerms, "apis": []string{"admin"}, "sessions_limit": 0, "ptz_priority": 0,
		"expired_at": nil, "disabled": false, "can_update_password": true,
		"admin_camera_groups": []any{}, "dhcp_subnet_groups": nil,
	}, 200, true})
	add(authzCase{"tech/patch-self/pin-limit", "tech", "PATCH", user("tech"), map[string]any{"sessions_limit": 5}, 403, false})
	add(authzCase{"tech/patch-self/name-and-limit", "tech", "PATCH", user("tech"), map[string]any{"name": "Renamed", "sessions_limit": 3}, 403, false})
	add(authzCase{"tech/patch-self/name-and-permissions", "tech", "PATCH", user("tech"), map[string]any{"name": "Renamed", "permissions": auth.AllPermissionNames()}, 403, false})

	// The issue's reproduction: users-view + users-update.
	add(authzCase{"narrow/patch-self/everything", "narrow", "PATCH", user("narrow"), map[string]any{
		"permissions": auth.AllPermissionNames(), "apis": []string{"client", "admin", "integration"},
	}, 403, false})
	add(authzCase{"narrow/password-admin", "narrow", "POST", user("admin", "/password"), map[string]any{"password": "taken-over"}, 403, false})
	add(authzCase{"narrow/disable-admin", "narrow", "PATCH", user("admin"), map[string]any{"disabled": true}, 403, false})
	add(authzCase{"narrow/patch-self/name", "narrow", "PATCH", user("narrow"), map[string]any{"name": "Narrow"}, 200, false})

	// Passwords.
	pw := map[string]any{"password": "new-password"}
	add(authzCase{"tech/password-cam", "tech", "POST", user("cam", "/password"), pw, 200, false})
	add(authzCase{"tech/password-peer", "tech", "POST", user("peer", "/password"), pw, 200, false})
	add(authzCase{"tech/password-admin", "tech", "POST", user("admin", "/password"), pw, 403, false})
	add(authzCase{"tech/password-self", "tech", "POST", user("tech", "/password"), pw, 403, false})
	add(authzCase{"admin/password-tech", "admin", "POST", user("tech", "/password"), pw, 200, false})
	add(authzCase{"admin/password-self", "admin", "POST", user("admin", "/password"), pw, 403, false})

	// Enabling (disabling is a field above).
	add(authzCase{"tech/enable-self", "tech", "PATCH", user("tech"), map[string]any{"disabled": false}, 200, true})

	// Deleting.
	add(authzCase{"tech/delete-cam", "tech", "DELETE", user("cam"), nil, 200, false})
	add(authzCase{"tech/delete-peer", "tech", "DELETE", user("peer"), nil, 200, false})
	add(authzCase{"tech/delete-admin", "tech", "DELETE", user("admin"), nil, 403, false})
	add(authzCase{"tech/delete-self", "tech", "DELETE", user("tech"), nil, 403, false})
	add(authzCase{"admin/delete-tech", "admin", "DELETE", user("tech"), nil, 200, false})
	add(authzCase{"admin/delete-self", "admin", "DELETE", user("admin"), nil, 403, false})

	// Sessions: listing changes nothing, ending one does.
	add(authzCase{"tech/sessions-cam", "tech", "GET", user("cam", "/sessions"), nil, 200, true})
	add(authzCase{"tech/sessions-self", "tech", "GET", user("tech", "/sessions"), nil, 200, true})
	add(authzCase{"tech/sessions-admin", "tech", "GET", user("admin", "/sessions"), nil, 403, false})
	add(authzCase{"admin/sessions-tech", "admin", "GET", user("tech", "/sessions"), nil, 200, true})
	add(authzCase{"tech/end-session-cam", "tech", "DELETE", sessionOf("cam"), nil, 200, false})
	add(authzCase{"tech/end-session-peer", "tech", "DELETE", sessionOf("peer"), nil, 200, false})
	add(authzCase{"tech/end-session-self", "tech", "DELETE", sessionOf("tech"), nil, 200, false})
	add(authzCase{"tech/end-session-admin", "tech", "DELETE", sessionOf("admin"), nil, 403, false})
	add(authzCase{"admin/end-session-tech", "admin", "DELETE", sessionOf("tech"), nil, 200, false})

	// Viewing is not limited.
	add(authzCase{"tech/view-admin", "tech", "GET", user("admin"), nil, 200, true})
	return cases
}

// TestManageOnlyWhatYouHold runs the table of actor × target × action
// through the real router: each case on a fresh box, with the status it
// must get, and on refusal the proof that no user and no session changed.
func TestManageOnlyWhatYouHold(t *testing.T) {
	for _, tc := range authzCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newAuthzFixture(t)
			before := f.snapshot(t)
			r := f.do(tc.method, tc.path(f), tc.body, authz(f.token[tc.actor])...)
			wantStatus(t, r, tc.status)
			after := f.snapshot(t)
			switch {
			case tc.status == http.StatusForbidden:
				msg := "This action is unauthorized."
				if strings.HasSuffix(tc.name, "/password-self") {
					msg = "Change your own password with your current one: POST /api/admin/v1/auth/password."
				}
				wantMessage(t, r, http.StatusForbidden, msg)
				if after != before {
					t.Fatalf("a refused request changed the store:\nbefore %s\nafter  %s", before, after)
				}
			case tc.noop && after != before:
				t.Fatalf("a request that changes nothing changed the store:\nbefore %s\nafter  %s", before, after)
			case !tc.noop && after == before:
				t.Fatal("an accepted request changed nothing")
			}
		})
	}
}

// TestManageRefusalMessages checks the envelope of refusals in both
// languages, and which refusals point to the own-password endpoint.
func TestManageRefusalMessages(t *testing.T) {
	f := newAuthzFixture(t)
	tech := authz(f.token["tech"])
	wantMessage(t, f.do("PATCH", user("admin")(f), map[string]any{"name": "x"}, append(tech, "Hl", "ru")...),
		http.StatusForbidden, "Действие не разрешено.")
	wantMessage(t, f.do("POST", user("tech", "/password")(f), map[string]any{"password": "new-password"}, tech...),
		http.StatusForbidden, "Change your own password with your current one: POST /api/admin/v1/auth/password.")
	wantMessage(t, f.do("POST", user("tech", "/password")(f), map[string]any{"password": "new-password"}, append(tech, "Hl", "ru")...),
		http.StatusForbidden, "Свой пароль меняется с вводом текущего: POST /api/admin/v1/auth/password.")
	// Another's password for one the caller may not manage is the plain refusal.
	wantMessage(t, f.do("POST", user("admin", "/password")(f), map[string]any{"password": "new-password"}, tech...),
		http.StatusForbidden, "This action is unauthorized.")
}

// TestIssue12Takeover is the issue's reproduction on a fresh box, step by
// step: a technician given users-view and users-update tries to raise
// themselves and to take over the first admin; one with users-create
// tries to make an all-powerful user.
func TestIssue12Takeover(t *testing.T) {
	e := newEnv(t)
	admin := e.addUser("admin", allAPIs, auth.AllPermissionNames()...)
	adminTok, _ := e.adminLogin("admin")

	r := e.do("POST", "/api/admin/v1/users", map[string]any{
		"login": "tech", "password": "tech-password", "apis": []string{"admin"},
		"permissions": []string{auth.PermUsersView, auth.PermUsersUpdate},
	}, authz(adminTok)...)
	wantStatus(t, r, http.StatusCreated)
	techID := int64(r.JSON(t)["id"].(float64))
	r = e.do("POST", "/api/admin/v1/auth/token", map[string]string{"login": "tech", "password": "tech-password"})
	wantStatus(t, r, http.StatusOK)
	tech := authz(r.JSON(t)["access_token"].(string))

	r = e.do("PATCH", fmt.Sprintf("/api/admin/v1/users/%d", techID), map[string]any{
		"permissions": auth.AllPermissionNames(), "apis": []string{"client", "admin", "integration"},
	}, tech...)
	wantMessage(t, r, http.StatusForbidden, "This action is unauthorized.")
	if u, err := e.Svc.User(t.Context(), techID); err != nil || len(u.Permissions) != 2 || len(u.APIs) != 1 {
		t.Fatalf("tech after the refused raise: %+v, %v", u, err)
	}

	r = e.do("POST", fmt.Sprintf("/api/admin/v1/users/%d/password", admin.ID), map[string]any{"password": "taken-over"}, tech...)
	wantMessage(t, r, http.StatusForbidden, "This action is unauthorized.")
	wantStatus(t, e.do("POST", "/api/admin/v1/auth/token", map[string]string{"login": "admin", "password": "taken-over"}), http.StatusUnprocessableEntity)
	wantStatus(t, e.do("GET", "/api/admin/v1/auth/user", nil, authz(adminTok)...), http.StatusOK)

	for _, body := range []map[string]any{{"disabled": true}, {"expired_at": "2020-01-01"}} {
		r = e.do("PATCH", fmt.Sprintf("/api/admin/v1/users/%d", admin.ID), body, tech...)
		wantMessage(t, r, http.StatusForbidden, "This action is unauthorized.")
	}
	wantStatus(t, e.do("GET", "/api/admin/v1/auth/user", nil, authz(adminTok)...), http.StatusOK)

	e.addUser("creator", adminAPI, auth.PermUsersCreate)
	creatorTok, _ := e.adminLogin("creator")
	r = e.do("POST", "/api/admin/v1/users", map[string]any{
		"login": "root2", "password": "root2-password", "apis": []string{"client", "admin", "integration"},
		"permissions": auth.AllPermissionNames(),
	}, authz(creatorTok)...)
	wantMessage(t, r, http.StatusForbidden, "This action is unauthorized.")
	wantStatus(t, e.do("POST", "/api/admin/v1/auth/token", map[string]string{"login": "root2", "password": "root2-password"}), http.StatusUnprocessableEntity)
}

// TestManageCLIUnlimited checks that root on the box (the CLI's actor) is
// held by none of these rules, even on an admin's own account.
func TestManageCLIUnlimited(t *testing.T) {
	e := newEnv(t)
	a := e.addUser("admin", allAPIs, auth.AllPermissionNames()...)
	ctx := t.Context()
	if _, err := e.Svc.SetPassword(ctx, auth.Root, a.ID, "root-sets-it"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Svc.Revoke(t.Context(), auth.Root, a.ID, []string{auth.PermUsersView}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Svc.SetDisabled(t.Context(), auth.Root, a.ID, true); err != nil {
		t.Fatal(err)
	}
	if err := e.Svc.DeleteUser(t.Context(), auth.Root, a.ID); err != nil {
		t.Fatal(err)
	}
	// The zero Actor, a forgotten one, may do nothing.
	b := e.addUser("cam", clientAPI)
	if _, err := e.Svc.SetDisabled(t.Context(), auth.Actor{}, b.ID, true); err == nil {
		t.Fatal("the zero Actor disabled a user")
	}
	if _, err := e.Svc.CreateUser(ctx, auth.Actor{}, auth.NewUser{Login: "x", Password: "password1"}); err == nil {
		t.Fatal("the zero Actor created a user")
	}
}
