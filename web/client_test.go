package web_test

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"vmsauth/auth"
)

// Seed 000: the client API, POST /api/v1/token, and the endpoints its
// token opens.

var (
	dateTimeRE  = regexp.MustCompile(`^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$`)
	sessionIDRE = regexp.MustCompile(`^[0-9a-f]{80}$`)
)

// Messages of the client and admin APIs, as the seed product words them.
const (
	msgCredentials     = "These credentials do not match our records."
	msgUnauthenticated = "Unauthenticated."
)

// creds is a client or admin login body.
func creds(login, password string) map[string]any {
	return map[string]any{"login": login, "password": password}
}

// sessionOf returns the stored session of a token.
func (e *env) sessionOf(token string) *auth.Session {
	e.t.Helper()
	s, err := e.DB.Session(auth.HashToken(token).SessionID())
	if err != nil {
		e.t.Fatalf("no session for token: %v", err)
	}
	return s
}

// checkClientUser checks a client API user object (seed 000) against the
// stored user and the token it came with.
func checkClientUser(t *testing.T, e *env, got any, want *auth.User, token string) {
	t.Helper()
	u := object(t, "user", got)
	wantKeys(t, "user", u, "id", "login", "name", "parent_id", "permissions", "created_at",
		"updated_at", "access_token_id", "can_update_password", "analytic_license")
	if u["id"] != float64(want.ID) {
		t.Errorf("id = %#v, want %d", u["id"], want.ID)
	}
	if u["login"] != want.Login || u["name"] != want.Name {
		t.Errorf("login, name = %#v, %#v; want %q, %q", u["login"], u["name"], want.Login, want.Name)
	}
	if want.ParentID == nil && u["parent_id"] != nil {
		t.Errorf("parent_id = %#v, want null", u["parent_id"])
	}
	if want.ParentID != nil && u["parent_id"] != float64(*want.ParentID) {
		t.Errorf("parent_id = %#v, want %d", u["parent_id"], *want.ParentID)
	}
	perms := list(t, "permissions", u["permissions"])
	if len(perms) != len(want.Permissions) {
		t.Errorf("permissions = %v, want %v", perms, want.Permissions)
	}
	for i, p := range perms {
		wantKeys(t, "permission", p, "id", "name")
		cat, _ := auth.LookupPermission(want.Permissions[i])
		if pm := p.(map[string]any); pm["id"] != float64(cat.ID) || pm["name"] != cat.Name {
			t.Errorf("permissions[%d] = %v, want {%d %s}", i, pm, cat.ID, cat.Name)
		}
	}
	for _, k := range []string{"created_at", "updated_at"} {
		if s, _ := u[k].(string); !dateTimeRE.MatchString(s) {
			t.Errorf("%s = %#v, want YYYY-MM-DD HH:MM:SS", k, u[k])
		}
	}
	if u["created_at"] != stamp(want.CreatedAt) || u["updated_at"] != stamp(want.UpdatedAt) {
		t.Errorf("created_at, updated_at = %v, %v; want %s, %s", u["created_at"], u["updated_at"],
			stamp(want.CreatedAt), stamp(want.UpdatedAt))
	}
	id, _ := u["access_token_id"].(string)
	if !sessionIDRE.MatchString(id) {
		t.Errorf("access_token_id = %#v, want 80 hex characters", u["access_token_id"])
	}
	if id == token {
		t.Error("access_token_id is the secret token")
	}
	if sid := e.sessionOf(token).ID; id != sid {
		t.Errorf("access_token_id = %s, want the token's session %s", id, sid)
	}
	if u["can_update_password"] != want.CanUpdatePassword {
		t.Errorf("can_update_password = %#v, want %v", u["can_update_password"], want.CanUpdatePassword)
	}
	list(t, "analytic_license", u["analytic_license"])
}

func TestClientLogin(t *testing.T) {
	lastYear := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	expired := func(u *auth.User) { u.ExpiredAt = &lastYear }
	// A password of exactly 72 bytes, bcrypt's limit: a longer one with the
	// same prefix must not match although bcrypt alone would say it does.
	long := strings.Repeat("p", 72)

	tests := []struct {
		name    string
		setup   func(e *env)
		query   string
		body    any
		headers []string
		// Either errs (a 422 with exactly these errors) or status and want
		// (exact JSON, when set) and check.
		errs   map[string][]string
		status int
		want   string
		check  func(t *testing.T, e *env, r response)
	}{
		{
			name: "OK", body: creds("alice", "password1"), status: http.StatusOK,
			check: func(t *testing.T, e *env, r response) {
				body := r.JSON(t)
				wantKeys(t, "body", body, "user", "access_token")
				tok, _ := body["access_token"].(string)
				alice, err := e.DB.UserByLogin("alice")
				if err != nil {
					t.Fatal(err)
				}
				checkClientUser(t, e, body["user"], alice, tok)
				user := body["user"].(map[string]any)
				wantJSONValue(t, "permissions", user["permissions"],
					`[{"id":1,"name":"cameras-view"},{"id":40,"name":"users-view"}]`)
				wantJSONValue(t, "analytic_license", user["analytic_license"],
					`[{"type":"analytic_l1","type_pretty":"LIC-XXXX-YY-L1","all":100,"free":98,"used":2}]`)
			},
		},
		{name: "OKLoginCaseInsensitive", body: creds("ALICE", "password1"), status: http.StatusOK},
		{
			name: "OKUnknownFieldsIgnored", status: http.StatusOK,
			body: map[string]any{"login": "alice", "password": "password1", "rememberMe": false, "device": map[string]any{"x": 1}},
		},
		{name: "OKSessionIDAbsent", body: creds("alice", "password1"), status: http.StatusOK},
		{name: "OKSessionIDNull", body: map[string]any{"login": "alice", "password": "password1", "session_id": nil}, status: http.StatusOK},
		{name: "OKSessionIDEmpty", body: map[string]any{"login": "alice", "password": "password1", "session_id": ""}, status: http.StatusOK},
		{name: "OKSessionIDNullString", body: map[string]any{"login": "alice", "password": "password1", "session_id": "null"}, status: http.StatusOK},
		{
			name: "OKPermissionsEmpty", body: creds("nobody-perms", "password1"), status: http.StatusOK,
			setup: func(e *env) { e.addUser("nobody-perms", clientAPI) },
			check: func(t *testing.T, e *env, r response) {
				user := object(t, "user", r.JSON(t)["user"])
				wantJSONValue(t, "permissions", user["permissions"], `[]`)
			},
		},

		{name: "ErrLoginMissing", body: map[string]any{"password": "password1"},
			errs: map[string][]string{"login": {"The login field is required."}}},
		{name: "ErrPasswordMissing", body: map[string]any{"login": "alice"},
			errs: map[string][]string{"password": {"The password field is required."}}},
		{name: "ErrBothMissing", body: map[string]any{},
			errs: map[string][]string{"login": {"The login field is required."}, "password": {"The password field is required."}}},
		{name: "ErrEmptyStrings", body: creds("", ""),
			errs: map[string][]string{"login": {"The login field is required."}, "password": {"The password field is required."}}},
		{name: "ErrNullFields", body: map[string]any{"login": nil, "password": nil},
			errs: map[string][]string{"login": {"The login field is required."}, "password": {"The password field is required."}}},
		{name: "ErrLoginNumber", body: map[string]any{"login": 42, "password": "password1"},
			errs: map[string][]string{"login": {"The login must be a string."}}},
		{name: "ErrLoginObject", body: map[string]any{"login": map[string]any{"$ne": ""}, "password": "password1"},
			errs: map[string][]string{"login": {"The login must be a string."}}},
		{name: "ErrPasswordArray", body: map[string]any{"login": "alice", "password": []string{"password1"}},
			errs: map[string][]string{"password": {"The password must be a string."}}},
		{name: "ErrSessionIDNumber", body: map[string]any{"login": "alice", "password": "password1", "session_id": 7},
			errs: map[string][]string{"session_id": {"The session id must be a string."}}},
		// Laravel reads a body that is not a JSON object as no input at all.
		{name: "ErrInvalidJSON", body: `{"login": "alice", "password": `,
			errs: map[string][]string{"login": {"The login field is required."}, "password": {"The password field is required."}}},
		{name: "ErrEmptyBody", body: "",
			errs: map[string][]string{"login": {"The login field is required."}, "password": {"The password field is required."}}},
		{name: "ErrJSONArray", body: `[{"login":"alice","password":"password1"}]`,
			errs: map[string][]string{"login": {"The login field is required."}, "password": {"The password field is required."}}},

		{name: "ErrUnknownLogin", body: creds("mallory", "password1"),
			errs: map[string][]string{"login": {msgCredentials}}},
		{name: "ErrWrongPassword", body: creds("alice", "password2"),
			errs: map[string][]string{"login": {msgCredentials}}},
		{
			name: "ErrPasswordBeyond72Bytes", body: creds("long", long+"tail"),
			setup: func(e *env) {
				if _, err := e.Svc.CreateUser(context.Background(), auth.Root, auth.NewUser{Login: "long", Password: long, APIs: clientAPI}); err != nil {
					e.t.Fatal(err)
				}
			},
			errs: map[string][]string{"login": {msgCredentials}},
		},
		{
			name: "ErrExpired", body: creds("old", "password1"),
			setup: func(e *env) { e.addUserWith("old", clientAPI, expired) },
			errs:  map[string][]string{"login": {"This account has expired."}},
		},
		{
			name: "ErrExpiredWrongPassword", body: creds("old", "password2"),
			setup: func(e *env) { e.addUserWith("old", clientAPI, expired) },
			errs:  map[string][]string{"login": {msgCredentials}},
		},
		{
			name: "ErrDisabled", body: creds("off", "password1"),
			setup: func(e *env) { e.addUserWith("off", clientAPI, func(u *auth.User) { u.Disabled = true }) },
			errs:  map[string][]string{"login": {"This account is disabled."}},
		},
		{
			name: "ErrDisabledWrongPassword", body: creds("off", "password2"),
			setup: func(e *env) { e.addUserWith("off", clientAPI, func(u *auth.User) { u.Disabled = true }) },
			errs:  map[string][]string{"login": {msgCredentials}},
		},
		{
			name: "ErrNoClientAccess", body: creds("tech", "password1"),
			setup: func(e *env) { e.addUser("tech", []auth.API{auth.APIAdmin, auth.APIIntegration}) },
			errs:  map[string][]string{"login": {"This account may not use the client API."}},
		},
		{
			name: "ErrNoClientAccessWrongPassword", body: creds("tech", "password2"),
			setup: func(e *env) { e.addUser("tech", adminAPI) },
			errs:  map[string][]string{"login": {msgCredentials}},
		},
		{name: "ErrUnknownSessionID", body: map[string]any{"login": "alice", "password": "password1", "session_id": strings.Repeat("ab", 40)},
			errs: map[string][]string{"session_id": {"The selected session id is invalid."}}},

		{
			name: "ErrSessionLimit", body: creds("alice", "password1"), status: 419,
			setup: func(e *env) {
				for range 5 {
					e.clientLogin("alice")
				}
			},
			check: func(t *testing.T, e *env, r response) {
				body := r.JSON(t)
				wantKeys(t, "body", body, "sessions", "sessions_limit", "sessions_count")
				if len(list(t, "sessions", body["sessions"])) != 5 || body["sessions_limit"] != 5.0 || body["sessions_count"] != 5.0 {
					t.Errorf("body = %s, want 5 sessions of 5", r.Body)
				}
			},
		},

		{
			name: "RussianHeader", body: map[string]any{}, headers: []string{"Hl", "ru"}, status: http.StatusUnprocessableEntity,
			want: `{"message":"Переданные данные некорректны.","errors":{
				"login":["Поле логин обязательно для заполнения."],
				"password":["Поле пароль обязательно для заполнения."]}}`,
		},
		{
			name: "RussianQuery", query: "?hl=ru", body: creds("alice", "password2"), status: http.StatusUnprocessableEntity,
			want: `{"message":"Переданные данные некорректны.","errors":{"login":["Неверный логин или пароль."]}}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, withLicenses(auth.License{Type: "analytic_l1", TypePretty: "LIC-XXXX-YY-L1", All: 100, Free: 98, Used: 2}))
			e.addUser("alice", clientAPI, "users-view", "cameras-view")
			if tc.setup != nil {
				tc.setup(e)
			}
			r := e.do("POST", "/api/v1/token"+tc.query, tc.body, tc.headers...)
			if tc.errs != nil {
				wantInvalid(t, r, tc.errs)
				return
			}
			if tc.want != "" {
				wantJSON(t, r, tc.status, tc.want)
			}
			wantStatus(t, r, tc.status)
			if tc.check != nil {
				tc.check(t, e, r)
			}
		})
	}
}

// wantJSONValue compares a decoded JSON value with a JSON literal.
func wantJSONValue(t *testing.T, what string, got any, want string) {
	t.Helper()
	wantJSON(t, response{Status: 200, Body: mustJSON(t, got)}, 200, want)
}

// An unknown login and a wrong password must not be told apart.
func TestClientLoginUnknownLoginLooksLikeWrongPassword(t *testing.T) {
	e := newEnv(t)
	e.addUser("alice", clientAPI)
	for _, hl := range []string{"en", "ru"} {
		unknown := e.do("POST", "/api/v1/token", creds("mallory", "password1"), "Hl", hl)
		wrong := e.do("POST", "/api/v1/token", creds("alice", "password2"), "Hl", hl)
		wantStatus(t, unknown, http.StatusUnprocessableEntity)
		if string(unknown.Body) != string(wrong.Body) || unknown.Status != wrong.Status {
			t.Errorf("hl=%s: unknown login answers %d %s, wrong password %d %s", hl, unknown.Status, unknown.Body, wrong.Status, wrong.Body)
		}
	}
}

func TestClientRouting(t *testing.T) {
	e := newEnv(t)
	huge := `{"login":"` + strings.Repeat("a", 10<<20) + `","password":"password1"}`
	tests := []struct {
		name    string
		method  string
		path    string
		body    any
		headers []string
		status  int
		msg     string
	}{
		{"MethodNotAllowed", "GET", "/api/v1/token", nil, nil, http.StatusMethodNotAllowed,
			"The GET method is not supported for this route. Supported methods: POST."},
		{"MethodNotAllowedTwoMethods", "PUT", "/api/v1/sessions/abc", nil, nil, http.StatusMethodNotAllowed,
			"The PUT method is not supported for this route. Supported methods: POST, DELETE."},
		{"MethodNotAllowedRussian", "GET", "/api/v1/token?hl=ru", nil, nil, http.StatusMethodNotAllowed,
			"Метод GET не поддерживается для этого адреса. Поддерживаются: POST."},
		{"NotFound", "GET", "/api/v1/nope", nil, nil, http.StatusNotFound, "Not found."},
		{"NotFoundPost", "POST", "/api/v1/nope", map[string]any{}, nil, http.StatusNotFound, "Not found."},
		{"NotFoundAcceptHTML", "GET", "/api/v1/nope", nil, []string{"Accept", "text/html"}, http.StatusNotFound, "Not found."},
		{"BodyTooLarge", "POST", "/api/v1/token", huge, nil, http.StatusRequestEntityTooLarge, "The request body is too large."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.withT(t).do(tc.method, tc.path, tc.body, tc.headers...)
			wantMessage(t, r, tc.status, tc.msg)
			if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type = %q, want JSON", ct)
			}
		})
	}
}

func TestClientSessionLimit(t *testing.T) {
	e := newEnv(t)
	alice := e.addUser("alice", clientAPI)
	devices := []struct{ client, ua, uuid string }{
		{"ios", "VMS/3.1 CFNetwork/1408 Darwin/22.5.0", "uuid-ios"},
		{"android", "Xiaomi / M2102J20SG / 11 / 1.1.0 / Android", "uuid-android"},
		{"web", "Mozilla/5.0 (X11; Linux x86_64)", "uuid-web"},
		{"thick-legal", "VMS Desktop 2.0", "uuid-desktop"},
		{"android-cctv", "okhttp/4.9", "uuid-cctv"},
	}
	tokens := make([]string, len(devices))
	ids := make([]string, len(devices))
	for i, d := range devices {
		if i > 0 {
			e.Clock.Advance(2 * time.Minute)
		}
		var body map[string]any
		tokens[i], body = e.clientLogin("alice", "X-Client", d.client, "User-Agent", d.ua, "X-UUID", d.uuid)
		ids[i] = body["user"].(map[string]any)["access_token_id"].(string)
	}
	e.Clock.Advance(time.Minute) // sessions are now 9, 7, 5, 3 and 1 minutes old

	limited := func(t *testing.T, headers ...string) []any {
		t.Helper()
		r := e.withT(t).do("POST", "/api/v1/token", creds("alice", "password1"), headers...)
		wantStatus(t, r, 419)
		body := r.JSON(t)
		wantKeys(t, "419 body", body, "sessions", "sessions_limit", "sessions_count")
		if body["sessions_limit"] != 5.0 || body["sessions_count"] != 5.0 {
			t.Errorf("sessions_limit, sessions_count = %v, %v; want 5, 5", body["sessions_limit"], body["sessions_count"])
		}
		sessions := list(t, "sessions", body["sessions"])
		if len(sessions) != 5 {
			t.Fatalf("%d sessions listed, want 5: %s", len(sessions), r.Body)
		}
		return sessions
	}

	t.Run("ErrSessionLimit", func(t *testing.T) {
		sessions := limited(t)
		for i, s := range sessions {
			wantKeys(t, "session", s, "id", "is_current", "user_agent", "client", "online", "ip", "last")
			got := s.(map[string]any)
			d := devices[i]
			last := stamp(e.Clock.Now().Add(-time.Duration(9-2*i) * time.Minute))
			want := map[string]any{"id": ids[i], "is_current": false, "user_agent": d.ua, "client": d.client,
				"online": i >= 3, "ip": "127.0.0.1", "last": last}
			wantJSONValue(t, "sessions["+d.client+"]", got, string(mustJSON(t, want)))
		}
		if n := len(e.withT(t).clientSessions(alice.ID)); n != 5 {
			t.Errorf("a refused login left %d sessions, want 5", n)
		}
	})

	t.Run("DeviceIDKept", func(t *testing.T) {
		for i, tok := range tokens {
			if got := e.withT(t).sessionOf(tok).Device; got != devices[i].uuid {
				t.Errorf("session %d keeps device %q, want X-UUID %q", i, got, devices[i].uuid)
			}
		}
	})

	t.Run("ClientGuessedFromUserAgent", func(t *testing.T) {
		e := newEnv(t)
		e.addUser("bob", clientAPI)
		for range 5 {
			e.clientLogin("bob", "User-Agent", "Xiaomi / M2102J20SG / 11 / 1.1.0 / Android")
		}
		r := e.do("POST", "/api/v1/token", creds("bob", "password1"))
		wantStatus(t, r, 419)
		for _, s := range list(t, "sessions", r.JSON(t)["sessions"]) {
			if c := s.(map[string]any)["client"]; c != "android" {
				t.Errorf("client = %v, want android guessed from the User-Agent", c)
			}
		}
	})

	t.Run("IsCurrent", func(t *testing.T) {
		sessions := limited(t, authz(tokens[2])...)
		for i, s := range sessions {
			if cur := s.(map[string]any)["is_current"]; cur != (i == 2) {
				t.Errorf("sessions[%d].is_current = %v, want %v", i, cur, i == 2)
			}
		}
	})

	t.Run("OKReplaceSession", func(t *testing.T) {
		e := e.withT(t)
		victim := limited(t)[1].(map[string]any)["id"].(string)
		r := e.do("POST", "/api/v1/token", map[string]any{"login": "alice", "password": "password1", "session_id": victim})
		wantStatus(t, r, http.StatusOK)
		fresh := r.JSON(t)["access_token"].(string)
		wantMessage(t, e.do("GET", "/api/v1/users/self", nil, authz(tokens[1])...), http.StatusUnauthorized, msgUnauthenticated)
		wantStatus(t, e.do("GET", "/api/v1/users/self", nil, authz(tokens[0])...), http.StatusOK)
		wantStatus(t, e.do("GET", "/api/v1/users/self", nil, authz(fresh)...), http.StatusOK)
		if n := len(e.clientSessions(alice.ID)); n != 5 {
			t.Errorf("%d client sessions after replacing one, want 5", n)
		}
		// The replaced session is gone: naming it again is an error.
		r = e.do("POST", "/api/v1/token", map[string]any{"login": "alice", "password": "password1", "session_id": victim})
		wantInvalid(t, r, map[string][]string{"session_id": {"The selected session id is invalid."}})
	})
}

func TestClientSessionLimitIsPerUser(t *testing.T) {
	e := newEnv(t)
	carol := e.addUserWith("carol", clientAPI, func(u *auth.User) { u.SessionsLimit = 2 })
	e.clientLogin("carol")
	e.clientLogin("carol")
	r := e.do("POST", "/api/v1/token", creds("carol", "password1"))
	wantStatus(t, r, 419)
	if body := r.JSON(t); body["sessions_limit"] != 2.0 || body["sessions_count"] != 2.0 {
		t.Errorf("body = %s, want a limit of 2", r.Body)
	}
	// Sessions of the other APIs do not count.
	e.updateUser(carol.ID, func(u *auth.User) { u.APIs = allAPIs; u.SessionsLimit = 3 })
	e.adminLogin("carol")
	e.integrationLogin("carol")
	e.clientLogin("carol")
}

func TestClientLoginReplaceSessionOfOthers(t *testing.T) {
	e := newEnv(t)
	e.addUser("alice", allAPIs)
	e.addUser("bob", clientAPI)
	bobToken, bobBody := e.clientLogin("bob")
	_, adminBody := e.adminLogin("alice")
	tests := []struct{ name, sessionID string }{
		{"ErrOtherUsersSession", bobBody["user"].(map[string]any)["access_token_id"].(string)},
		{"ErrOwnAdminSession", adminBody["user"].(map[string]any)["access_token_id"].(string)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := e.withT(t)
			r := e.do("POST", "/api/v1/token", map[string]any{"login": "alice", "password": "password1", "session_id": tc.sessionID})
			wantInvalid(t, r, map[string][]string{"session_id": {"The selected session id is invalid."}})
			if _, err := e.DB.Session(tc.sessionID); err != nil {
				t.Errorf("the named session was ended: %v", err)
			}
		})
	}
	wantStatus(t, e.do("GET", "/api/v1/users/self", nil, authz(bobToken)...), http.StatusOK)
}

// Fifty logins of one user at once must not get past the limit of five:
// the check and the write are one transaction.
func TestClientLoginRace(t *testing.T) {
	e := newEnv(t)
	alice := e.addUser("alice", clientAPI)
	const n = 50
	statuses := make([]int, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			r, err := e.send("POST", "/api/v1/token", creds("alice", "password1"))
			statuses[i], errs[i] = r.Status, err
		})
	}
	close(start)
	wg.Wait()
	count := map[int]int{}
	for i, s := range statuses {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		count[s]++
	}
	if count[http.StatusOK] != 5 || count[419] != n-5 {
		t.Errorf("statuses = %v, want 5 × 200 and %d × 419", count, n-5)
	}
	if got := len(e.clientSessions(alice.ID)); got != 5 {
		t.Errorf("store holds %d client sessions, want 5", got)
	}
}

func TestClientSelf(t *testing.T) {
	e := newEnv(t)
	parent := e.addUser("parent", clientAPI)
	alice := e.addUserWith("alice", clientAPI, func(u *auth.User) {
		u.ParentID = &parent.ID
		u.CanUpdatePassword = false
	}, "archive-view")
	tokA, _ := e.clientLogin("alice")
	tokB, _ := e.clientLogin("alice")
	for _, tok := range []string{tokA, tokB} {
		r := e.do("GET", "/api/v1/users/self", nil, authz(tok)...)
		wantStatus(t, r, http.StatusOK)
		checkClientUser(t, e, r.JSON(t), alice, tok)
	}
}

func TestClientLogout(t *testing.T) {
	e := newEnv(t)
	e.addUser("alice", clientAPI)
	tok, _ := e.clientLogin("alice")
	other, _ := e.clientLogin("alice")
	wantJSON(t, e.do("POST", "/api/v1/logout", nil, authz(tok)...), http.StatusOK, `{"status":"ok"}`)
	wantMessage(t, e.do("GET", "/api/v1/users/self", nil, authz(tok)...), http.StatusUnauthorized, msgUnauthenticated)
	wantMessage(t, e.do("POST", "/api/v1/logout", nil, authz(tok)...), http.StatusUnauthorized, msgUnauthenticated)
	wantStatus(t, e.do("GET", "/api/v1/users/self", nil, authz(other)...), http.StatusOK)
}

func TestClientSessions(t *testing.T) {
	e := newEnv(t)
	e.addUser("alice", allAPIs)
	e.addUser("bob", clientAPI)
	tokA, bodyA := e.clientLogin("alice", "X-Client", "ios", "User-Agent", "VMS iOS")
	e.Clock.Advance(10 * time.Minute)
	tokB, bodyB := e.clientLogin("alice", "X-Client", "web", "User-Agent", "Mozilla/5.0")
	e.adminLogin("alice")       // not a client session: not listed
	e.integrationLogin("alice") // likewise
	bobTok, bobBody := e.clientLogin("bob")
	idOf := func(body map[string]any) string { return body["user"].(map[string]any)["access_token_id"].(string) }

	t.Run("List", func(t *testing.T) {
		e := e.withT(t)
		r := e.do("GET", "/api/v1/sessions", nil, authz(tokB)...)
		wantStatus(t, r, http.StatusOK)
		want := []map[string]any{
			{"id": idOf(bodyA), "is_current": false, "user_agent": "VMS iOS", "client": "ios", "online": false,
				"ip": "127.0.0.1", "last": stamp(e.Clock.Now().Add(-10 * time.Minute))},
			{"id": idOf(bodyB), "is_current": true, "user_agent": "Mozilla/5.0", "client": "web", "online": true,
				"ip": "127.0.0.1", "last": stamp(e.Clock.Now())},
		}
		wantJSON(t, r, http.StatusOK, string(mustJSON(t, want)))
	})

	tests := []struct{ name, method, id string }{
		{"ErrUnknownPOST", "POST", strings.Repeat("0", 80)},
		{"ErrUnknownDELETE", "DELETE", "nope"},
		{"ErrOtherUsersSessionPOST", "POST", idOf(bobBody)},
		{"ErrOtherUsersSessionDELETE", "DELETE", idOf(bobBody)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := e.withT(t)
			wantMessage(t, e.do(tc.method, "/api/v1/sessions/"+tc.id, nil, authz(tokB)...), http.StatusNotFound, "Not found.")
			// Nothing was ended.
			for _, tok := range []string{bobTok, tokA, tokB} {
				wantStatus(t, e.do("GET", "/api/v1/users/self", nil, authz(tok)...), http.StatusOK)
			}
		})
	}
	for _, tc := range []struct {
		name   string
		method string
		own    bool // the caller ends its own session
	}{
		{"OKPOST", "POST", false}, {"OKDELETE", "DELETE", false}, {"OKOwnSession", "DELETE", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := e.withT(t)
			victim, body := e.clientLogin("alice")
			caller := tokA
			if tc.own {
				caller = victim
			}
			wantJSON(t, e.do(tc.method, "/api/v1/sessions/"+idOf(body), nil, authz(caller)...), http.StatusOK, `{"status":"ok"}`)
			wantMessage(t, e.do("GET", "/api/v1/users/self", nil, authz(victim)...), http.StatusUnauthorized, msgUnauthenticated)
			wantStatus(t, e.do("GET", "/api/v1/users/self", nil, authz(tokA)...), http.StatusOK)
			wantStatus(t, e.do("GET", "/api/v1/users/self", nil, authz(bobTok)...), http.StatusOK)
		})
	}
}

func TestClientTokenErrors(t *testing.T) {
	e := newEnv(t)
	e.addUser("alice", allAPIs)
	tok, _ := e.clientLogin("alice")
	ended, _ := e.clientLogin("alice")
	wantStatus(t, e.do("POST", "/api/v1/logout", nil, authz(ended)...), http.StatusOK)
	admin, _ := e.adminLogin("alice")
	tests := []struct {
		name    string
		headers []string
		msg     string
	}{
		{"Missing", nil, msgUnauthenticated},
		{"Empty", []string{"Authorization", "Bearer "}, msgUnauthenticated},
		{"Garbage", authz("garbage"), msgUnauthenticated},
		{"NotBearer", []string{"Authorization", "Basic " + tok}, msgUnauthenticated},
		{"Ended", authz(ended), msgUnauthenticated},
		{"AdminToken", authz(admin), msgUnauthenticated},
		{"Russian", authz("garbage", "Hl", "ru"), "Не авторизован."},
	}
	paths := []struct{ method, path string }{
		{"GET", "/api/v1/users/self"}, {"POST", "/api/v1/logout"}, {"GET", "/api/v1/sessions"},
		{"POST", "/api/v1/sessions/x"}, {"DELETE", "/api/v1/sessions/x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, p := range paths {
				wantMessage(t, e.withT(t).do(p.method, p.path, nil, tc.headers...), http.StatusUnauthorized, tc.msg)
			}
		})
	}
	wantStatus(t, e.do("GET", "/api/v1/users/self", nil, "Authorization", "bearer "+tok), http.StatusOK)
}

func TestClientSessionIdle(t *testing.T) {
	self := func(e *env, tok string) response {
		e.t.Helper()
		return e.do("GET", "/api/v1/users/self", nil, authz(tok)...)
	}

	t.Run("ErrUnusedFor30Days", func(t *testing.T) {
		e := newEnv(t)
		e.addUser("alice", clientAPI)
		tok, _ := e.clientLogin("alice")
		e.Clock.Advance(30*24*time.Hour - time.Second)
		wantStatus(t, self(e, tok), http.StatusOK)
		e.Clock.Advance(30 * 24 * time.Hour)
		wantMessage(t, self(e, tok), http.StatusUnauthorized, msgUnauthenticated)
		// An expired session is no longer listed or counted.
		tok2, _ := e.clientLogin("alice")
		r := e.do("GET", "/api/v1/sessions", nil, authz(tok2)...)
		if n := len(list(t, "sessions", mustDecode(t, r.Body))); n != 1 {
			t.Errorf("%d sessions listed, want only the new one", n)
		}
	})

	t.Run("OKUseExtends", func(t *testing.T) {
		e := newEnv(t)
		e.addUser("alice", clientAPI)
		tok, _ := e.clientLogin("alice")
		for range 3 { // 60 days in all, never 30 idle
			e.Clock.Advance(20 * 24 * time.Hour)
			wantStatus(t, self(e, tok), http.StatusOK)
		}
		e.Clock.Advance(30 * 24 * time.Hour)
		wantStatus(t, self(e, tok), http.StatusUnauthorized)
	})

	t.Run("TouchAtMostOncePerMinute", func(t *testing.T) {
		e := newEnv(t)
		e.addUser("alice", clientAPI)
		tok, _ := e.clientLogin("alice")
		login := e.Clock.Now()
		e.Clock.Advance(30 * time.Second)
		wantStatus(t, self(e, tok), http.StatusOK)
		if s := e.sessionOf(tok); !s.LastSeen.Equal(login) || !s.ExpiresAt.Equal(login.Add(auth.DefaultClientIdle)) {
			t.Errorf("after 30 s: last seen %v, expires %v; want the login's %v, unchanged", s.LastSeen, s.ExpiresAt, login)
		}
		e.Clock.Advance(31 * time.Second)
		wantStatus(t, self(e, tok), http.StatusOK)
		now := e.Clock.Now()
		if s := e.sessionOf(tok); !s.LastSeen.Equal(now) || !s.ExpiresAt.Equal(now.Add(auth.DefaultClientIdle)) {
			t.Errorf("after 61 s: last seen %v, expires %v; want %v and 30 days on", s.LastSeen, s.ExpiresAt, now)
		}
	})
}

// A password change, a disabled, expired or deleted account, and a revoked
// client API each end the user's tokens at once.
func TestClientTokensEndWithAccount(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		act  func(e *env, id int64) error
	}{
		{"SetPassword", func(e *env, id int64) error {
			_, err := e.Svc.SetPassword(ctx, auth.Root, id, "new-password")
			return err
		}},
		{"SetDisabled", func(e *env, id int64) error { _, err := e.Svc.SetDisabled(auth.Root, id, true); return err }},
		{"DeleteUser", func(e *env, id int64) error { return e.Svc.DeleteUser(auth.Root, id) }},
		{"Expired", func(e *env, id int64) error {
			past := e.Clock.Now().Add(-time.Second)
			e.updateUser(id, func(u *auth.User) { u.ExpiredAt = &past })
			return nil
		}},
		{"ClientAPIRevoked", func(e *env, id int64) error {
			e.updateUser(id, func(u *auth.User) { u.APIs = adminAPI })
			return nil
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			alice := e.addUser("alice", clientAPI)
			e.addUser("bob", clientAPI)
			tok, _ := e.clientLogin("alice")
			bobTok, _ := e.clientLogin("bob")
			if err := tc.act(e, alice.ID); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{"/api/v1/users/self", "/api/v1/sessions"} {
				wantMessage(t, e.do("GET", p, nil, authz(tok)...), http.StatusUnauthorized, msgUnauthenticated)
			}
			wantStatus(t, e.do("GET", "/api/v1/users/self", nil, authz(bobTok)...), http.StatusOK)
		})
	}
}
