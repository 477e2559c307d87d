package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"vmsauth/auth"
	"vmsauth/web"
)

// The admin page's own tests: first over plain HTTP (headers, content
// types, no inline code the CSP would block), then in a real headless
// Chromium against the whole server on a bbolt file.

func TestPageServed(t *testing.T) {
	e := newEnv(t)
	wantPageHeaders := func(t *testing.T, r response) {
		t.Helper()
		for name, want := range map[string]string{
			"X-Frame-Options":        "DENY",
			"Referrer-Policy":        "no-referrer",
			"X-Content-Type-Options": "nosniff",
			"Cache-Control":          "no-cache",
		} {
			if got := r.Header.Get(name); got != want {
				t.Errorf("%s = %q, want %q", name, got, want)
			}
		}
		csp := r.Header.Get("Content-Security-Policy")
		for _, d := range []string{"default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "object-src 'none'", "base-uri 'none'"} {
			if !strings.Contains(csp, d) {
				t.Errorf("Content-Security-Policy %q lacks %q", csp, d)
			}
		}
		if strings.Contains(csp, "unsafe-") {
			t.Errorf("Content-Security-Policy %q allows unsafe sources", csp)
		}
	}

	t.Run("Index", func(t *testing.T) {
		r := e.do("GET", "/", nil)
		wantStatus(t, r, http.StatusOK)
		if ct := r.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("Content-Type = %q", ct)
		}
		wantPageHeaders(t, r)
		html := string(r.Body)
		for _, want := range []string{`<script src="/assets/app.js" defer></script>`, `<link rel="stylesheet" href="/assets/app.css">`, `id="login-form"`} {
			if !strings.Contains(html, want) {
				t.Errorf("page lacks %s", want)
			}
		}
		// The CSP forbids inline code: any would silently not run.
		for _, bad := range []*regexp.Regexp{
			regexp.MustCompile(`<script(\s[^>]*)?>[^<]`),
			regexp.MustCompile(`<script(?:\s(?:[^s>]|s[^r]|sr[^c])*)?>`),
			regexp.MustCompile(`<style`),
			regexp.MustCompile(`\sstyle=`),
			regexp.MustCompile(`\son[a-z]+=`),
			regexp.MustCompile(`(?i)https?://`),
		} {
			if m := bad.FindString(html); m != "" {
				t.Errorf("page has %q, which the CSP blocks or needs the network", m)
			}
		}
	})

	t.Run("HeadAndRevalidate", func(t *testing.T) {
		r := e.do("HEAD", "/", nil)
		wantStatus(t, r, http.StatusOK)
		etag := r.Header.Get("ETag")
		if etag == "" {
			t.Fatal("no ETag")
		}
		r = e.do("GET", "/", nil, "If-None-Match", etag)
		wantStatus(t, r, http.StatusNotModified)
		wantPageHeaders(t, r)
	})

	t.Run("Assets", func(t *testing.T) {
		for path, ct := range map[string]string{
			"/assets/app.js":      "text/javascript; charset=utf-8",
			"/assets/i18n.js":     "text/javascript; charset=utf-8",
			"/assets/app.css":     "text/css; charset=utf-8",
			"/assets/favicon.svg": "image/svg+xml",
		} {
			r := e.do("GET", path, nil)
			wantStatus(t, r, http.StatusOK)
			if got := r.Header.Get("Content-Type"); got != ct {
				t.Errorf("%s: Content-Type = %q, want %q", path, got, ct)
			}
			if len(r.Body) == 0 {
				t.Errorf("%s: empty body", path)
			}
			wantPageHeaders(t, r)
		}
		// Text from the user store reaches the page only as text.
		for _, name := range []string{"app.js", "i18n.js"} {
			js := string(e.do("GET", "/assets/"+name, nil).Body)
			for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "localStorage", "document.cookie"} {
				if strings.Contains(js, bad) {
					t.Errorf("%s uses %s", name, bad)
				}
			}
		}
	})

	t.Run("OnlyThePage", func(t *testing.T) {
		// Everything but "/" and the assets stays the APIs' JSON 404.
		for _, path := range []string{"/index.html", "/assets/index.html", "/assets/", "/assets/nope.js", "/assets/../web.go", "/page/app.js", "/app.js"} {
			r := e.do("GET", path, nil)
			if r.Status != http.StatusNotFound {
				t.Errorf("GET %s = %d, want 404", path, r.Status)
				continue
			}
			if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("GET %s: Content-Type = %q, want JSON", path, ct)
			}
		}
		wantStatus(t, e.do("POST", "/", nil), http.StatusMethodNotAllowed)
	})
}

// Browser tests.

const (
	// stepTimeout bounds one step of a browser test; the whole test takes
	// a few seconds.
	stepTimeout = 10 * time.Second
	adminName   = "Site Technician"
)

// chromium finds a Chromium or Chrome binary. Without one the browser
// tests skip, except in CI (CI=true), where a missing browser is a
// failure: .ci/run installs Debian's chromium.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell", "headless_shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no Chromium found; the browser tests must run in CI (apt-get install chromium)")
	}
	t.Skip("no Chromium found; install it (apt-get install chromium) to run the browser tests")
	return ""
}

// newBrowser starts a headless Chromium for the test and returns its
// context; each page opens a tab of it.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	exe := chromium(t)
	dir := t.TempDir()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.Env("TMPDIR="+dir),
		chromedp.UserDataDir(filepath.Join(dir, "profile")),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("lang", "en-US"),
		chromedp.Flag("accept-lang", "en-US"),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
	})
	start, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	// The first Run binds the browser's life to its context, so it runs
	// on ctx itself; the timeout only bounds the wait.
	done := make(chan error, 1)
	go func() { done <- chromedp.Do(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("starting %s: %v", exe, err)
		}
	case <-start.Done():
		t.Fatalf("starting %s: no answer in 20 s", exe)
	}
	return ctx
}

// page is one browser tab on the server, recording a screenshot after
// every step. The screenshots are written out when the test fails, or
// always when VMSAUTH_PAGE_SHOTS names a directory.
type page struct {
	t     *testing.T
	ctx   context.Context
	base  string
	shots []shot
}

type shot struct {
	name string
	png  []byte
}

// watchProblems runs in the tab before any page script. It records what
// the page must never cause: a CSP violation (inline code or a foreign
// source, which silently does not work), an uncaught error, an unhandled
// rejection.
const watchProblems = `window.__problems = [];
document.addEventListener("securitypolicyviolation", function (e) {
	window.__problems.push("CSP blocked " + (e.blockedURI || "inline code") + " (" + e.violatedDirective + ")");
});
window.addEventListener("error", function (e) { window.__problems.push("error: " + e.message); });
window.addEventListener("unhandledrejection", function (e) {
	window.__problems.push("unhandled rejection: " + (e.reason && e.reason.message || e.reason));
});`

func newPage(t *testing.T, browser context.Context, base string, setup ...chromedp.Action[chromedp.Void]) *page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	p := &page{t: t, ctx: ctx, base: base}
	t.Cleanup(p.writeShots)
	t.Cleanup(p.checkProblems)
	watch := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, cdppage.AddScriptToEvaluateOnNewDocument, cdppage.AddScriptToEvaluateOnNewDocumentParams{Source: watchProblems})
		return err
	})
	if err := chromedp.Do(ctx, append([]chromedp.Action[chromedp.Void]{watch}, setup...)...); err != nil {
		t.Fatalf("opening a tab: %v", err)
	}
	return p
}

// checkProblems fails the test for anything watchProblems saw.
func (p *page) checkProblems() {
	ctx, cancel := context.WithTimeout(p.ctx, 3*time.Second)
	defer cancel()
	problems, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.__problems || []`))
	if err != nil {
		p.t.Logf("reading the page's problems: %v", err)
		return
	}
	for _, pr := range problems {
		p.t.Errorf("page: %s", pr)
	}
}

// step runs actions as one named step of the test and screenshots the
// result; a failed step ends the test.
func (p *page) step(name string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	err := chromedp.Do(ctx, actions...)
	p.snap(name)
	if err != nil {
		p.t.Fatalf("step %q: %v", name, err)
	}
}

func (p *page) snap(name string) {
	ctx, cancel := context.WithTimeout(p.ctx, 3*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.t.Logf("screenshot %q: %v", name, err)
		return
	}
	p.shots = append(p.shots, shot{fmt.Sprintf("%02d-%s.png", len(p.shots)+1, name), png})
}

func (p *page) writeShots() {
	dir := os.Getenv("VMSAUTH_PAGE_SHOTS")
	if dir == "" && !p.t.Failed() {
		return
	}
	if dir == "" {
		// Not t.TempDir: that is removed with the test, and these are
		// for a person to look at afterwards.
		var err error
		if dir, err = os.MkdirTemp("", "vmsauth-page-"); err != nil {
			p.t.Log(err)
			return
		}
	}
	dir = filepath.Join(dir, strings.NewReplacer("/", "_", " ", "_").Replace(p.t.Name()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		p.t.Log(err)
		return
	}
	for _, s := range p.shots {
		if err := os.WriteFile(filepath.Join(dir, s.name), s.png, 0o644); err != nil {
			p.t.Log(err)
			return
		}
	}
	p.t.Logf("screenshots of each step: %s", dir)
}

// eval runs a JavaScript expression in the tab and returns its value.
func eval[T any](p *page, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		p.t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

func (p *page) token() *string {
	p.t.Helper()
	return eval[*string](p, `sessionStorage.getItem("vmsauth.token")`)
}

// waitText waits until the element sel is shown and its text contains
// want.
func waitText(sel, want string) chromedp.Action[chromedp.Void] {
	q, _ := json.Marshal(sel)
	expr := `(function () { var e = document.querySelector(` + string(q) + `);
		return e && !e.closest("[hidden]") && e.getClientRects().length ? e.textContent : null; })()`
	return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		var last *string
		for {
			v, err := chromedp.Evaluate[*string](expr)(ctx, tg)
			if err != nil {
				return chromedp.Void{}, err
			}
			if v != nil && strings.Contains(*v, want) {
				return chromedp.Void{}, nil
			}
			last = v
			select {
			case <-ctx.Done():
				seen := "nothing shown"
				if last != nil {
					seen = fmt.Sprintf("%q", strings.Join(strings.Fields(*last), " "))
				}
				return chromedp.Void{}, fmt.Errorf("%s never showed %q (last: %s): %w", sel, want, seen, ctx.Err())
			case <-time.After(30 * time.Millisecond):
			}
		}
	}
}

// typeInto replaces an input's value by typing, as a person would. The
// field is emptied by script: chromedp v0.23's SetValue cannot set "",
// because cdproto's json/v2 "omitempty" drops an empty string argument
// and the input then reads "undefined".
func typeInto(sel, text string) chromedp.Action[chromedp.Void] {
	q, _ := json.Marshal(sel)
	return chromedp.Steps(
		chromedp.WaitVisible(chromedp.CSS(sel)),
		func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			_, err := chromedp.Evaluate[bool](`(function () { var e = document.querySelector(`+string(q)+`); e.value = ""; return true; })()`)(ctx, tg)
			return chromedp.Void{}, err
		},
		chromedp.SendKeys(chromedp.CSS(sel), text),
	)
}

func click(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible)
}

// newPageEnv is a server with one technician holding every permission,
// login "admin", password "password1".
func newPageEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	e := newEnv(t, opts...)
	e.addUserWith("admin", allAPIs, func(u *auth.User) { u.Name = adminName }, auth.AllPermissionNames()...)
	return e
}

// TestPageBrowser walks the technician's whole task in Chromium: a wrong
// password, signing in, creating a client user, setting their password,
// that user signing in from an app, ending that session from the page,
// and signing out.
func TestPageBrowser(t *testing.T) {
	browser := newBrowser(t)

	t.Run("Flow", func(t *testing.T) {
		e := newPageEnv(t)
		p := newPage(t, browser, e.URL)

		p.step("login-form",
			chromedp.Navigate(e.URL+"/"),
			chromedp.WaitVisible(chromedp.ID("login-form")),
			waitText("#login-submit", "Sign in"),
		)

		p.step("wrong-password",
			typeInto("#login-login", "admin"),
			typeInto("#login-password", "not-the-password"),
			click("#login-submit"),
			waitText("#login-error", "These credentials do not match our records."),
		)
		if tok := p.token(); tok != nil {
			t.Fatalf("a failed login stored a token")
		}

		p.step("signed-in",
			typeInto("#login-password", "password1"),
			click("#login-submit"),
			chromedp.WaitVisible(chromedp.ID("app-view")),
			waitText("#profile-name", adminName),
			waitText("#whoami-name", adminName),
			waitText("#profile-expires", strings.TrimSuffix(stamp(e.Clock.Now().Add(auth.DefaultAdminTTL)), ":00")),
			waitText("#profile-perms-summary", fmt.Sprintf("Permissions (%d)", len(auth.Catalog))),
			waitText(`#users-body tr[data-login="admin"]`, "Active"),
		)
		if !eval[bool](p, `document.getElementById("login-view").hidden && document.getElementById("login-error").hidden`) {
			t.Error("the login form is still shown after signing in")
		}
		adminToken := p.token()
		if adminToken == nil || *adminToken == "" {
			t.Fatal("no token in sessionStorage after signing in")
		}
		if cookies := eval[string](p, `document.cookie`); cookies != "" {
			t.Errorf("the page set cookies: %q", cookies)
		}
		wantStatus(t, e.do("GET", "/api/admin/v1/auth/user", nil, authz(*adminToken)...), http.StatusOK)

		p.step("reload-keeps-session",
			chromedp.Reload(),
			chromedp.WaitVisible(chromedp.ID("app-view")),
			waitText(`#users-body tr[data-login="admin"]`, "admin"),
		)

		p.step("create-user",
			click("#new-user"),
			chromedp.WaitVisible(chromedp.ID("user-dialog")),
			waitText("#user-dialog-title", "New user"),
			typeInto("#uf-login", "door-tablet"),
			typeInto("#uf-name", "Front door tablet"),
			typeInto("#uf-password", "initial-pass-1"),
			chromedp.WaitVisible(chromedp.CSS(`#uf-perms input[value="cameras-live"]`)),
			click(`#uf-perms input[value="cameras-live"]`),
			click(`#uf-perms input[value="archive-view"]`),
		)
		if !eval[bool](p, `document.getElementById("uf-api-client").checked && !document.getElementById("uf-api-admin").checked`) {
			t.Fatal("a new user should start with client API access only")
		}
		p.step("user-created",
			click("#uf-submit"),
			chromedp.WaitNotVisible(chromedp.ID("user-dialog")),
			waitText(`#users-body tr[data-login="door-tablet"]`, "Front door tablet"),
			waitText(`#users-body tr[data-login="door-tablet"]`, "Client apps"),
			waitText("#toast", "User door-tablet created."),
		)
		u, err := e.Svc.UserByLogin("door-tablet")
		if err != nil {
			t.Fatal(err)
		}
		if !u.Can(auth.APIClient) || u.Can(auth.APIAdmin) || !u.Has("cameras-live") || !u.Has("archive-view") || len(u.Permissions) != 2 {
			t.Fatalf("created user: apis %v, permissions %v", u.APIs, u.Permissions)
		}
		row := `#users-body tr[data-login="door-tablet"] `

		p.step("password-too-short",
			click(row+`button[data-action="password"]`),
			chromedp.WaitVisible(chromedp.ID("password-dialog")),
			waitText("#password-dialog-title", "door-tablet"),
			typeInto("#pw-new", "short"),
			typeInto("#pw-confirm", "short"),
			click("#pw-submit"),
			waitText("#pw-password-error", "The password must be at least 8 bytes long."),
		)
		p.step("password-set",
			typeInto("#pw-new", "new-secret-42"),
			typeInto("#pw-confirm", "new-secret-42"),
			click("#pw-submit"),
			chromedp.WaitNotVisible(chromedp.ID("password-dialog")),
			waitText("#toast", "Password of door-tablet set"),
		)

		// The user signs in from the Android app with the new password.
		android := "Xiaomi / M2102J20SG / 11 / 1.1.0 / Android"
		r := e.do("POST", "/api/v1/token", map[string]any{"login": "door-tablet", "password": "initial-pass-1"}, "User-Agent", android)
		wantStatus(t, r, http.StatusUnprocessableEntity)
		r = e.do("POST", "/api/v1/token", map[string]any{"login": "door-tablet", "password": "new-secret-42"}, "User-Agent", android)
		wantStatus(t, r, http.StatusOK)
		login := r.JSON(t)
		clientToken := login["access_token"].(string)
		sessionID := object(t, "user", login["user"])["access_token_id"].(string)
		wantStatus(t, e.do("GET", "/api/v1/users/self", nil, authz(clientToken)...), http.StatusOK)

		sessRow := fmt.Sprintf(`#sessions-body tr[data-session-id=%q]`, sessionID)
		p.step("sessions",
			click(row+`button[data-action="sessions"]`),
			chromedp.WaitVisible(chromedp.ID("sessions-dialog")),
			waitText("#sessions-dialog-title", "door-tablet"),
			waitText(sessRow, "android"),
			waitText(sessRow, "Client"),
			waitText(sessRow, android),
		)
		p.step("session-ended",
			click(sessRow+` button[data-action="end-session"]`),
			chromedp.WaitNotPresent(chromedp.CSS(sessRow)),
			waitText("#sessions-empty", "No active sessions."),
		)
		wantMessage(t, e.do("GET", "/api/v1/users/self", nil, authz(clientToken)...), http.StatusUnauthorized, "Unauthenticated.")

		p.step("logged-out",
			click(`#sessions-dialog button[data-close]`),
			chromedp.WaitNotVisible(chromedp.ID("sessions-dialog")),
			click("#logout"),
			chromedp.WaitVisible(chromedp.ID("login-form")),
		)
		if tok := p.token(); tok != nil {
			t.Errorf("the token is still in sessionStorage after logging out")
		}
		if !eval[bool](p, `document.getElementById("app-view").hidden`) {
			t.Error("the users list is still shown after logging out")
		}
		wantMessage(t, e.do("GET", "/api/admin/v1/auth/user", nil, authz(*adminToken)...), http.StatusUnauthorized, "Unauthenticated.")
	})

	t.Run("EditAndDisable", func(t *testing.T) {
		e := newPageEnv(t)
		cam := e.addUser("cam", clientAPI)
		clientToken, _ := e.withT(t).clientLogin("cam")
		p := newPage(t, browser, e.URL)
		signIn(p, e)
		row := `#users-body tr[data-login="cam"] `

		p.step("edit",
			click(row+`button[data-action="edit"]`),
			chromedp.WaitVisible(chromedp.ID("user-dialog")),
			typeInto("#uf-name", "Gate camera operator"),
			click("#uf-api-integration"),
			typeInto("#uf-sessions-limit", "2000"),
			click("#uf-submit"),
			waitText("#uf-sessions_limit-error", "The sessions limit may not be greater than 1000"),
		)
		p.step("edited",
			typeInto("#uf-sessions-limit", "3"),
			click("#uf-submit"),
			chromedp.WaitNotVisible(chromedp.ID("user-dialog")),
			waitText(row, "Gate camera operator"),
			waitText(row, "Integrations"),
		)
		u, err := e.Svc.User(cam.ID)
		if err != nil {
			t.Fatal(err)
		}
		if u.Name != "Gate camera operator" || !u.Can(auth.APIIntegration) || u.SessionsLimit != 3 {
			t.Fatalf("edited user: %+v", u)
		}

		// An edit sends only what changed: the admin's session limit is
		// unset (shown as the default 5) and must stay unset.
		p.step("edit-self-name",
			click(`#users-body tr[data-login="admin"] button[data-action="edit"]`),
			chromedp.WaitVisible(chromedp.ID("user-dialog")),
			typeInto("#uf-name", "Lead Technician"),
			click("#uf-submit"),
			chromedp.WaitNotVisible(chromedp.ID("user-dialog")),
			waitText("#profile-name", "Lead Technician"),
		)
		if a, err := e.Svc.UserByLogin("admin"); err != nil || a.SessionsLimit != 0 || len(a.Permissions) != len(auth.Catalog) {
			t.Fatalf("admin after renaming: %+v, %v", a, err)
		}

		p.step("disable-confirm",
			click(row+`button[data-action="disable"]`),
			chromedp.WaitVisible(chromedp.ID("confirm-dialog")),
			waitText("#confirm-title", "Disable cam?"),
		)
		p.step("disabled",
			click("#confirm-ok"),
			chromedp.WaitNotVisible(chromedp.ID("confirm-dialog")),
			waitText(row, "Disabled"),
			chromedp.WaitVisible(chromedp.CSS(row+`button[data-action="enable"]`)),
		)
		wantStatus(t, e.do("GET", "/api/v1/users/self", nil, authz(clientToken)...), http.StatusUnauthorized)
		if self := eval[bool](p, `!!document.querySelector('#users-body tr[data-login="admin"] button[data-action="disable"]')`); self {
			t.Error("the technician is offered Disable on their own account")
		}

		p.step("search",
			typeInto("#user-search", "gate"),
			chromedp.WaitNotPresent(chromedp.CSS(`#users-body tr[data-login="admin"]`)),
			waitText(row, "cam"),
			waitText("#page-info", "1–1 of 1"),
		)

		// The technician's token dies elsewhere (another technician ended
		// it): the next request brings back the login form, saying why.
		admin, err := e.Svc.UserByLogin("admin")
		if err != nil {
			t.Fatal(err)
		}
		sessions, err := e.Svc.UserSessions(auth.Root, admin.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range sessions {
			if err := e.Svc.EndSession(auth.Root, s.ID); err != nil {
				t.Fatal(err)
			}
		}
		p.step("token-ended-elsewhere",
			typeInto("#user-search", "cam"),
			chromedp.WaitVisible(chromedp.ID("login-form")),
			waitText("#login-error", "Your session has ended. Please sign in again."),
		)
		if tok := p.token(); tok != nil {
			t.Error("a dead token stays in sessionStorage")
		}
	})

	// A technician whose role is narrower than the first admin's sees only
	// what they may do, and a refusal the page did not foresee (the user
	// changed meanwhile) in words.
	t.Run("LimitedTechnician", func(t *testing.T) {
		e := newPageEnv(t)
		e.addUser("tech", adminAPI, append(slices.Clone(techPerms), auth.PermPermissionsView)...)
		cam := e.addUser("cam", clientAPI, "cameras-view")
		p := newPage(t, browser, e.URL)
		p.step("sign-in",
			chromedp.Navigate(e.URL+"/"),
			typeInto("#login-login", "tech"),
			typeInto("#login-password", "password1"),
			click("#login-submit"),
			waitText(`#users-body tr[data-login="cam"]`, "cam"),
			waitText(`#users-body tr[data-login="admin"]`, "admin"),
		)
		actions := func(login string) string {
			return eval[string](p, `Array.from(document.querySelectorAll('#users-body tr[data-login="`+login+`"] button')).map(function (b) { return b.dataset.action; }).join(",")`)
		}
		for login, want := range map[string]string{
			"admin": "",
			"cam":   "edit,password,sessions,disable",
			"tech":  "edit,password,sessions",
		} {
			if got := actions(login); got != want {
				t.Errorf("actions offered on %s: %q, want %q", login, got, want)
			}
		}

		p.step("create-dialog",
			click("#new-user"),
			chromedp.WaitVisible(chromedp.CSS(`#uf-perms input[value="servers-update"]`)),
		)
		if !eval[bool](p, `document.querySelector('#uf-perms input[value="servers-update"]').disabled && !document.querySelector('#uf-perms input[value="cameras-view"]').disabled`) {
			t.Error("the create dialog offers permissions the technician does not hold")
		}
		p.step("select-all-held",
			click("#uf-perms-all"),
			typeInto("#uf-login", "door"),
			typeInto("#uf-password", "door-password"),
			click("#uf-submit"),
			chromedp.WaitNotVisible(chromedp.ID("user-dialog")),
			waitText(`#users-body tr[data-login="door"]`, "door"),
		)
		if door, err := e.Svc.UserByLogin("door"); err != nil || len(door.Permissions) != len(techPerms)+1 {
			t.Fatalf("door created with %v, %v; want the technician's own permissions", door, err)
		}

		p.step("edit-self",
			click(`#users-body tr[data-login="tech"] button[data-action="edit"]`),
			chromedp.WaitVisible(chromedp.ID("user-dialog")),
			waitText("#uf-self-hint", "only your name"),
		)
		if !eval[bool](p, `["uf-api-admin","uf-sessions-limit","uf-ptz","uf-expired-at","uf-can-update-password"].every(function (id) { return document.getElementById(id).disabled; }) && Array.from(document.querySelectorAll("#uf-perms input")).every(function (c) { return c.disabled; }) && document.getElementById("uf-disabled-wrap").hidden && document.getElementById("uf-delete").hidden`) {
			t.Error("the technician may edit more than the name of their own account")
		}
		p.step("renamed-self",
			typeInto("#uf-name", "Night shift"),
			click("#uf-submit"),
			chromedp.WaitNotVisible(chromedp.ID("user-dialog")),
			waitText("#profile-name", "Night shift"),
		)

		// Behind the page's back, cam gets a permission the technician
		// lacks: the page still offers Disable, the box refuses.
		if _, err := e.Svc.Grant(auth.Root, cam.ID, []string{"servers-update"}); err != nil {
			t.Fatal(err)
		}
		p.step("refused-in-words",
			click(`#users-body tr[data-login="cam"] button[data-action="disable"]`),
			chromedp.WaitVisible(chromedp.ID("confirm-dialog")),
			click("#confirm-ok"),
			waitText("#users-error", "This action is unauthorized."),
			// The page redraws the list: cam is no longer the technician's.
			chromedp.WaitNotPresent(chromedp.CSS(`#users-body tr[data-login="cam"] button[data-action="disable"]`)),
			waitText("#users-error", "This action is unauthorized."),
		)
		if u, err := e.Svc.User(cam.ID); err != nil || u.Disabled {
			t.Fatalf("cam after the refusal: %+v, %v", u, err)
		}
	})

	t.Run("OwnPassword", func(t *testing.T) {
		e := newPageEnv(t)
		p := newPage(t, browser, e.URL)
		signIn(p, e)
		p.step("dialog",
			click(`#users-body tr[data-login="admin"] button[data-action="password"]`),
			chromedp.WaitVisible(chromedp.ID("own-password-dialog")),
			typeInto("#op-current", "not-my-password"),
			typeInto("#op-new", "brand-new-pass"),
			typeInto("#op-confirm", "brand-new-pass"),
			click("#op-submit"),
			waitText("#op-current_password-error", "The current password is incorrect."),
		)
		p.step("changed",
			typeInto("#op-current", "password1"),
			click("#op-submit"),
			chromedp.WaitVisible(chromedp.ID("login-form")),
			waitText("#login-error", "Your password was changed"),
		)
		if tok := p.token(); tok != nil {
			t.Error("the ended token stays in sessionStorage")
		}
		p.step("sign-in-again",
			typeInto("#login-login", "admin"),
			typeInto("#login-password", "brand-new-pass"),
			click("#login-submit"),
			waitText(`#users-body tr[data-login="admin"]`, "admin"),
		)
		p.step("profile-button",
			click("#change-password"),
			chromedp.WaitVisible(chromedp.ID("own-password-dialog")),
			waitText("#own-password-dialog-title", "Change my password"),
		)
	})

	t.Run("Russian", func(t *testing.T) {
		e := newPageEnv(t)
		p := newPage(t, browser, e.URL, chromedp.Func(preferRussian))
		p.step("login-form",
			chromedp.Navigate(e.URL+"/"),
			waitText("#login-submit", "Войти"),
			waitText(`label[for="login-password"]`, "Пароль"),
		)
		if l := eval[string](p, `document.documentElement.lang`); l != "ru" {
			t.Errorf("html lang = %q, want ru", l)
		}
		p.step("wrong-password",
			typeInto("#login-login", "admin"),
			typeInto("#login-password", "not-the-password"),
			click("#login-submit"),
			waitText("#login-error", "Неверный логин или пароль."),
		)
		p.step("signed-in",
			typeInto("#login-password", "password1"),
			click("#login-submit"),
			waitText("#users-title", "Пользователи"),
			waitText(`#users-body tr[data-login="admin"]`, "Активна"),
		)
	})

	t.Run("Throttled", func(t *testing.T) {
		e := newPageEnv(t, func(a *auth.Config, w *web.Options) {
			w.Throttle = auth.NewThrottle(auth.ThrottleConfig{IPLimit: 100, LoginLimit: 1, Now: a.Now})
		})
		p := newPage(t, browser, e.URL)
		p.step("first-failure",
			chromedp.Navigate(e.URL+"/"),
			typeInto("#login-login", "admin"),
			typeInto("#login-password", "guess-one"),
			click("#login-submit"),
			waitText("#login-error", "These credentials do not match our records."),
		)
		p.step("throttled",
			typeInto("#login-password", "guess-two"),
			click("#login-submit"),
			waitText("#login-error", "Too Many Attempts."),
			waitText("#login-error", "Try again in "),
		)
		if !eval[bool](p, `document.getElementById("login-submit").disabled`) {
			t.Error("the sign-in button stays enabled while throttled")
		}
	})

	t.Run("Phone", func(t *testing.T) {
		e := newPageEnv(t)
		for i := range 3 {
			e.addUser(fmt.Sprintf("camera-%d", i+1), clientAPI, "cameras-live")
		}
		p := newPage(t, browser, e.URL, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
		signIn(p, e)
		p.step("users", waitText(`#users-body tr[data-login="camera-3"]`, "camera-3"))
		if over := eval[bool](p, `document.documentElement.scrollWidth > window.innerWidth`); over {
			t.Error("the page scrolls sideways on a phone")
		}
		p.step("dialog",
			click(`#users-body tr[data-login="camera-1"] button[data-action="edit"]`),
			chromedp.WaitVisible(chromedp.ID("user-dialog")),
		)
		if over := eval[bool](p, `(function () { var r = document.getElementById("user-dialog").getBoundingClientRect(); return r.left < 0 || r.right > window.innerWidth; })()`); over {
			t.Error("the user dialog does not fit a phone's screen")
		}
	})
}

// preferRussian makes the tab prefer Russian, as a browser set to Russian
// does: navigator.language becomes "ru-RU".
func preferRussian(ctx context.Context, tg *chromedp.Target) error {
	ua, err := chromedp.Evaluate[string](`navigator.userAgent`)(ctx, tg)
	if err != nil {
		return err
	}
	_, err = cdp.Call(ctx, tg, emulation.SetUserAgentOverride, emulation.SetUserAgentOverrideParams{UserAgent: ua, AcceptLanguage: "ru-RU,ru"})
	return err
}

// signIn signs the page in as the env's technician.
func signIn(p *page, e *env) {
	p.t.Helper()
	p.step("sign-in",
		chromedp.Navigate(e.URL+"/"),
		typeInto("#login-login", "admin"),
		typeInto("#login-password", "password1"),
		click("#login-submit"),
		waitText(`#users-body tr[data-login="admin"]`, "admin"),
	)
}
