package web_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/crypto/bcrypt"

	"vmsauth/auth"
	"vmsauth/captcha"
	"vmsauth/store"
	"vmsauth/web"
)

// appliance is the handler wired as serve wires it: throttle, captchas,
// audit trail and live-session metrics on a real database.
func appliance(t *testing.T) (http.Handler, *auth.Auditor) {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "vmsauth.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	svc, err := auth.New(db, auth.Config{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Bootstrap(context.Background(), "admin", "admin-password"); err != nil {
		t.Fatal(err)
	}
	audit := auth.NewAuditor(db, 100, time.Hour, nil, func(err error) { t.Error(err) })
	t.Cleanup(audit.Close)
	h, err := web.New(svc, web.Options{
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		Throttle:     auth.NewThrottle(auth.ThrottleConfig{IPLimit: 3}),
		Captchas:     testCaptchas(t, captcha.Config{}),
		Audit:        audit,
		LiveSessions: func() (map[auth.API]int, error) { return db.LiveSessions(time.Now()) },
	})
	if err != nil {
		t.Fatal(err)
	}
	return checkContract(t, h), audit
}

func serveOnce(h http.Handler, method, path, remote, body string, headers ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.RemoteAddr = remote
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestMetrics(t *testing.T) {
	h, _ := appliance(t)
	const local = "127.0.0.1:5000"
	serveOnce(h, "POST", "/api/admin/v1/auth/token", local, `{"login":"admin","password":"admin-password"}`)
	serveOnce(h, "POST", "/api/admin/v1/auth/token", local, `{"login":"admin","password":"wrong-password"}`)
	serveOnce(h, "POST", "/api/admin/v1/auth/token", local, `{"login":"admin","password":"wrong-password"}`)
	serveOnce(h, "POST", "/api/admin/v1/auth/token", local, `{"login":"admin","password":"wrong-password"}`) // 4th: throttled
	serveOnce(h, "GET", "/api/v1/captcha", local, "")
	// Made-up methods on made-up paths share one series, or a client
	// could grow the label set without bound.
	serveOnce(h, "BREW", "/pot", local, "")
	serveOnce(h, "WHEN", "/x", local, "")

	rec := serveOnce(h, "GET", "/metrics", local, "")
	if rec.Code != http.StatusOK {
		t.Fatalf("metrics from loopback: %d", rec.Code)
	}
	body := rec.Body.String()
	for _, want := range []string{
		`vmsauth_logins_total{api="admin",result="ok"} 1`,
		`vmsauth_logins_total{api="admin",result="failed"} 3`,
		`vmsauth_throttled_total{api="admin"} 1`,
		`vmsauth_live_sessions{api="admin"} 1`,
		`vmsauth_live_sessions{api="client"} 0`,
		`vmsauth_captchas_total{event="issued"} 1`,
		`vmsauth_http_requests_total{method="POST",route="/api/admin/v1/auth/token",code="200"} 1`,
		`vmsauth_http_requests_total{method="POST",route="/api/admin/v1/auth/token",code="422"} 2`,
		`vmsauth_http_request_duration_seconds_count{method="POST",route="/api/admin/v1/auth/token"} 4`,
		`vmsauth_http_request_duration_seconds_bucket{method="POST",route="/api/admin/v1/auth/token",le="+Inf"} 4`,
		`vmsauth_http_request_duration_seconds_bucket{method="POST",route="/api/admin/v1/auth/token",le="0.0001"} `,
		`vmsauth_http_request_duration_seconds_bucket{method="POST",route="/api/admin/v1/auth/token",le="5"} 4`,
		"# TYPE vmsauth_http_request_duration_seconds histogram\n",
		"# TYPE vmsauth_logins_total counter\n",
		"# TYPE vmsauth_live_sessions gauge\n",
		`vmsauth_http_requests_total{method="other",route="unmatched",code="404"} 2`,
		`go_goroutines`,
		`process_resident_memory_bytes`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// Prometheus' own parser must take the whole page, or a scrape fails.
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("Prometheus cannot parse /metrics: %v", err)
	}
	if f := families["vmsauth_logins_total"]; f == nil || len(f.GetMetric()) != 2*len(auth.AllAPIs) {
		t.Errorf("parsed vmsauth_logins_total: %v", f)
	}
	// Untyped series lose counter resets and Grafana's metadata; the
	// client's Go and process metrics are held to this as well, so a new
	// client version cannot add a family without its help and type.
	for name, f := range families {
		if f.GetType() == dto.MetricType_UNTYPED || f.GetHelp() == "" {
			t.Errorf("%s has type %v and help %q", name, f.GetType(), f.GetHelp())
		}
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "process_cpu_seconds_total", "go_gc_duration_seconds"} {
		if families[name] == nil {
			t.Errorf("metrics lack the family %s", name)
		}
	}
	if f := families["vmsauth_http_request_duration_seconds"]; f.GetType() != dto.MetricType_HISTOGRAM {
		t.Errorf("request latency is a %v, want a histogram", f.GetType())
	} else {
		for _, m := range f.GetMetric() {
			if n := len(m.GetHistogram().GetBucket()); n < 10 {
				t.Errorf("request latency of %v has %d buckets", m.GetLabel(), n)
			}
		}
	}
	if rec := serveOnce(h, "GET", "/metrics", "192.0.2.10:5000", ""); rec.Code != http.StatusForbidden {
		t.Fatalf("metrics from a remote address: %d, want 403", rec.Code)
	}
}

// TestMetricsPromtool has Prometheus' own linter judge a real scrape taken
// after logins of all three APIs, token checks and stray requests: it must
// report nothing (metadata, types, names, histogram layout).
func TestMetricsPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("no promtool found; the metrics must be checked in CI (apt-get install prometheus)")
		}
		t.Skip("no promtool found; install it (apt-get install prometheus) to check the metrics")
	}
	h, _ := appliance(t)
	const local = "127.0.0.1:5000"
	for _, login := range []struct{ path, body string }{
		{"/api/v1/token", `{"login":"admin","password":"admin-password"}`},
		{"/api/admin/v1/auth/token", `{"login":"admin","password":"admin-password"}`},
		{"/v1/login_check", `{"username":"admin","password":"admin-password"}`},
	} {
		rec := serveOnce(h, "POST", login.path, local, login.body)
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", login.path, rec.Code, rec.Body)
		}
		body := rec.Body.String()
		i := strings.Index(body, `token":"`)
		if i < 0 {
			t.Fatalf("%s gave no token: %s", login.path, body)
		}
		tok := body[i+8:]
		tok = tok[:strings.IndexByte(tok, '"')]
		if rec := serveOnce(h, "GET", "/auth/verify", local, "", "Authorization", "Bearer "+tok); rec.Code != http.StatusOK {
			t.Fatalf("verify after %s: %d %s", login.path, rec.Code, rec.Body)
		}
	}
	serveOnce(h, "POST", "/v1/login_check", local, `{"username":"admin","password":"wrong-password"}`)
	serveOnce(h, "GET", "/api/v1/captcha", local, "")
	serveOnce(h, "BREW", "/pot", local, "")
	serveOnce(h, "GET", "/metrics", local, "") // the second scrape sees the first
	rec := serveOnce(h, "GET", "/metrics", local, "")
	if rec.Code != http.StatusOK {
		t.Fatalf("metrics: %d", rec.Code)
	}
	for _, want := range []string{
		`vmsauth_logins_total{api="client",result="ok"} 1`,
		`vmsauth_logins_total{api="admin",result="ok"} 1`,
		`vmsauth_logins_total{api="integration",result="ok"} 1`,
		`vmsauth_http_request_duration_seconds_count{method="GET",route="/auth/verify"} 3`,
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = rec.Body
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

func TestAuditTrail(t *testing.T) {
	h, _ := appliance(t)
	serveOnce(h, "POST", "/v1/login_check", "192.0.2.7:1", `{"username":"admin","password":"nope-nope"}`)
	rec := serveOnce(h, "POST", "/api/admin/v1/auth/token", "192.0.2.8:1", `{"login":"admin","password":"admin-password"}`)
	if rec.Code != http.StatusOK {
		t.Fatalf("admin login: %d %s", rec.Code, rec.Body)
	}
	tok := rec.Body.String()
	tok = tok[strings.Index(tok, `"access_token":"`)+16:]
	tok = tok[:strings.IndexByte(tok, '"')]

	rec = serveOnce(h, "GET", "/api/admin/v1/audit?login=ADMIN", "192.0.2.8:1", "", "Authorization", "Bearer "+tok)
	if rec.Code != http.StatusOK {
		t.Fatalf("audit: %d %s", rec.Code, rec.Body)
	}
	body := rec.Body.String()
	for _, want := range []string{`"ip":"192.0.2.7"`, `"api":"integration"`, `"result":"failed"`, `"reason":"bad credentials"`,
		`"ip":"192.0.2.8"`, `"api":"admin"`, `"result":"ok"`} {
		if !strings.Contains(body, want) {
			t.Errorf("audit lacks %s: %s", want, body)
		}
	}
	if strings.Contains(body, "nope-nope") || strings.Contains(body, "admin-password") || strings.Contains(body, tok) {
		t.Fatal("the audit trail holds a password or a token")
	}
	if strings.Index(body, "192.0.2.8") > strings.Index(body, "192.0.2.7") {
		t.Error("audit is not newest first")
	}
	if rec := serveOnce(h, "GET", "/api/admin/v1/audit?since=yesterday", "192.0.2.8:1", "", "Authorization", "Bearer "+tok); rec.Code != http.StatusUnprocessableEntity {
		t.Errorf("bad since: %d", rec.Code)
	}
}
