// Package web maps HTTP onto auth and back: the client, admin and
// integration login APIs, the token endpoints the rest of the box calls, and
// the server around them. Each API answers in its own error format (Laravel's
// for client and admin, numbered codes for integration); no Go error text
// ever reaches a client. web is the only package that imports Gin, and it
// holds no rules of its own: those live in auth.
package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"vmsauth/auth"
	"vmsauth/captcha"
)

// DefaultBodyLimit caps request bodies; a login is a few hundred bytes.
const DefaultBodyLimit = 64 << 10

// Options configure the handler.
type Options struct {
	// TrustedProxies are CIDRs or addresses whose X-Forwarded-For is
	// believed. Empty means the TCP peer is always the client.
	TrustedProxies []string
	// BodyLimit caps request bodies in bytes; default DefaultBodyLimit.
	BodyLimit int64
	// Logger receives request and login logs; default slog.Default().
	Logger *slog.Logger
	// Throttle limits the three login APIs; nil turns throttling off.
	Throttle *auth.Throttle
	// Captchas serves GET /api/v1/captcha; nil serves none.
	Captchas *captcha.Captchas
	// RequireCaptcha makes client logins solve a captcha (needs Captchas).
	RequireCaptcha bool
	// CaptchaLimit bounds captcha requests per IP; nil means 20 per 10
	// minutes on the real clock.
	CaptchaLimit *auth.Window
	// Audit receives every login attempt; nil keeps no trail.
	Audit *auth.Auditor
	// LiveSessions counts live sessions by API for /metrics; nil omits it.
	LiveSessions func() (map[auth.API]int, error)
	// MetricsAllow are networks besides loopback that may read /metrics.
	MetricsAllow []*net.IPNet
}

// Captcha request budget per client IP (SPEC §2).
const (
	captchaPerIP  = 20
	captchaWindow = 10 * time.Minute
)

// server holds what every handler needs.
type server struct {
	svc            *auth.Service
	log            *slog.Logger
	throttle       *auth.Throttle
	captchas       *captcha.Captchas
	requireCaptcha bool
	captchaLimit   *auth.Window
	audit          *auth.Auditor
	metrics        *metrics
	// The two error envelopes, set on each API's route group.
	laravel, integration envelope
	// unavailableLogged is when (Unix seconds) a 503 for an unavailable
	// store was last logged.
	unavailableLogged atomic.Int64
}

func init() {
	// Release mode is set once, here, because GIN_MODE from the environment
	// panics on a typo and debug mode prints every route at start.
	gin.SetMode(gin.ReleaseMode)
}

// New returns the HTTP handler of every vmsauth endpoint.
func New(svc *auth.Service, opt Options) (http.Handler, error) {
	hs, err := NewHandlers(svc, opt)
	if err != nil {
		return nil, err
	}
	return hs.Main, nil
}

// Handlers are vmsauth's two HTTP handlers, on one set of rules and metrics.
type Handlers struct {
	// Main serves every endpoint, for the HTTPS listener.
	Main http.Handler
	// ForwardAuth serves only /auth/verify and /healthz, for the
	// plain-HTTP listener of the reverse proxy on the box itself.
	ForwardAuth *ForwardAuth
}

// NewHandlers returns both handlers.
func NewHandlers(svc *auth.Service, opt Options) (*Handlers, error) {
	if opt.BodyLimit <= 0 {
		opt.BodyLimit = DefaultBodyLimit
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.RequireCaptcha && opt.Captchas == nil {
		return nil, errors.New("web: RequireCaptcha needs Captchas")
	}
	if opt.CaptchaLimit == nil {
		opt.CaptchaLimit = auth.NewWindow(captchaPerIP, captchaWindow, auth.DefaultMaxCounters, time.Now)
	}
	if opt.Throttle != nil {
		// Failures of existing logins are counted by user id.
		opt.Throttle.SetUsers(svc)
	}
	s := &server{
		svc: svc, log: opt.Logger, throttle: opt.Throttle,
		captchas: opt.Captchas, requireCaptcha: opt.RequireCaptcha, captchaLimit: opt.CaptchaLimit,
		audit: opt.Audit, metrics: newMetrics(opt.LiveSessions, opt.MetricsAllow),
	}
	s.laravel, s.integration = laravelEnvelope{s}, integrationEnvelope{s}

	r := gin.New()
	// Gin trusts X-Forwarded-For from everyone by default; a camera client
	// could then pick its own address. Only listed proxies are believed.
	var proxies []string
	if len(opt.TrustedProxies) > 0 {
		proxies = opt.TrustedProxies
	}
	if err := r.SetTrustedProxies(proxies); err != nil {
		return nil, fmt.Errorf("trusted proxies: %w", err)
	}
	r.RemoteIPHeaders = []string{"X-Forwarded-For"}
	r.HandleMethodNotAllowed = true
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false

	r.Use(joinForwardedFor, s.metrics.observe, s.logRequests, s.recover, limitBody(opt.BodyLimit))
	r.NoRoute(s.unrouted(faultNotFound))
	r.NoMethod(s.unrouted(faultMethod))

	s.clientRoutes(r)
	s.adminRoutes(r)
	s.integrationRoutes(r)
	s.pageRoutes(r)
	r.GET("/auth/verify", s.verify)
	r.GET("/healthz", s.healthz)
	r.GET("/metrics", s.metrics.handler())
	openAPIRoute(r)
	return &Handlers{Main: r, ForwardAuth: s.forwardAuthRouter()}, nil
}

// joinForwardedFor makes every X-Forwarded-For line count: Gin reads only
// the first, and a proxy that appends a line of its own (HAProxy's option
// forwardfor) would leave the client's own first line to name the client.
// Joined, the rightmost address that is not a trusted proxy wins.
func joinForwardedFor(c *gin.Context) {
	if v := c.Request.Header.Values("X-Forwarded-For"); len(v) > 1 {
		c.Request.Header.Set("X-Forwarded-For", strings.Join(v, ","))
	}
	c.Next()
}

func (s *server) logRequests(c *gin.Context) {
	// Without this, every request would pay for c.ClientIP and for boxing
	// the arguments of a Debug line that is then thrown away.
	if !s.log.Enabled(c.Request.Context(), slog.LevelDebug) {
		c.Next()
		return
	}
	start := time.Now()
	c.Next()
	// The query string is left out: it may carry ?hl= only today, but a
	// client that puts a token there must not find it in the journal.
	s.log.Debug("request", "method", c.Request.Method, "path", c.Request.URL.Path,
		"status", c.Writer.Status(), "ip", c.ClientIP(), "duration", time.Since(start))
}

// recover turns a panic into a 500 in the API's envelope; the cause goes to
// the log only.
func (s *server) recover(c *gin.Context) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("panic serving request", "path", c.Request.URL.Path, "panic", v)
			if !c.Writer.Written() {
				s.internalError(c, fmt.Errorf("panic: %v", v))
			}
			c.Abort()
		}
	}()
	c.Next()
}

func limitBody(n int64) gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, n)
		c.Next()
	}
}

// noStore keeps the answers of the endpoints that hand out tokens out of
// every cache, browser or proxy (RFC 6749 §5.1). It is set before the
// handler runs so that every answer of the endpoint carries it, errors
// included: a 419 carries a captcha grace key.
func noStore(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
}

// Errors reading a request body. Each is the client's doing (or its
// network's), never the box's: they are answered 4xx, not 500.
var (
	errBodyTooLarge = errors.New("request body too large")
	errBodyCut      = errors.New("request body cut short")
	errBodyTimeout  = errors.New("request body too slow")
)

// readBody reads the capped request body.
func readBody(c *gin.Context) ([]byte, error) {
	b, err := io.ReadAll(c.Request.Body)
	var tooLarge *http.MaxBytesError
	var netErr net.Error
	switch {
	case err == nil:
		return b, nil
	case errors.As(err, &tooLarge):
		return nil, errBodyTooLarge
	case errors.As(err, &netErr) && netErr.Timeout():
		// The server's ReadTimeout passed while the body was still coming.
		return nil, fmt.Errorf("%w: %v", errBodyTimeout, err)
	}
	// Fewer bytes than Content-Length (io.ErrUnexpectedEOF), a reset, a
	// chunked body that breaks off.
	return nil, fmt.Errorf("%w: %v", errBodyCut, err)
}

// statusClientGone is recorded (in metrics and the request log) for a
// request whose client left before its answer, as nginx does.
const statusClientGone = 499

// clientFault answers the errors a client causes that handlers do not map
// themselves: a body too large (413), cut short (400) or too slow (408),
// and a client that gave up while its request waited (no answer: nobody is
// listening). It reports whether err was one of them. They are logged at
// debug level only: they are no fault of the box, and a client can make
// as many as it likes; the request metrics count them by status.
func (s *server) clientFault(c *gin.Context, err error) bool {
	var f fault
	switch {
	case errors.Is(err, errBodyTooLarge):
		f = faultTooLarge
	case errors.Is(err, errBodyCut):
		f = faultBadBody
	case errors.Is(err, errBodyTimeout):
		f = faultTimeout
	case errors.Is(err, context.Canceled) && c.Request.Context().Err() != nil:
		s.log.Debug("client gone before its answer", "path", c.Request.URL.Path, "ip", c.ClientIP())
		c.AbortWithStatus(statusClientGone)
		return true
	default:
		return false
	}
	s.log.Debug("bad request body", "path", c.Request.URL.Path, "ip", c.ClientIP(), "status", f.status, "err", err)
	s.envelope(c).fault(c, f)
	return true
}

// jsonObject decodes a body that should be one JSON object. ok is false for
// anything else: invalid JSON, trailing data, another JSON type.
func jsonObject(b []byte) (fields map[string]json.RawMessage, ok bool) {
	// encoding/json would turn bytes that are not UTF-8 into U+FFFD, so
	// that different logins or passwords would silently become the same.
	if !utf8.Valid(b) || !json.Valid(b) {
		return nil, false
	}
	if err := json.Unmarshal(b, &fields); err != nil || fields == nil {
		return nil, false
	}
	return fields, true
}

// stringField reads an optional string field. present is false for an
// absent field or JSON null; ok is false when the value is not a string.
func stringField(fields map[string]json.RawMessage, name string) (v string, present, ok bool) {
	raw, found := fields[name]
	if !found || string(raw) == "null" {
		return "", false, true
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", true, false
	}
	return v, true, true
}

// bearer returns the token of an "Authorization: Bearer" header, or "".
func bearer(c *gin.Context) string { return bearerToken(c.GetHeader("Authorization")) }

// bearerToken is the token of an Authorization header value, or "".
func bearerToken(h string) string {
	const prefix = "bearer "
	if len(h) > len(prefix) && strings.EqualFold(h[:len(prefix)], prefix) {
		return strings.TrimSpace(h[len(prefix):])
	}
	return ""
}

// clientMeta describes the caller's device for its session.
func clientMeta(c *gin.Context) auth.ClientMeta {
	ua := clip(c.GetHeader("User-Agent"), 512)
	client := strings.ToLower(clip(c.GetHeader("X-Client"), 64))
	if client == "" {
		client = guessClient(ua)
	}
	return auth.ClientMeta{
		IP:        c.ClientIP(),
		UserAgent: ua,
		Client:    client,
		Device:    clip(c.GetHeader("X-UUID"), 128),
	}
}

// guessClient names the kind of client from its User-Agent when it sent no
// X-Client header. The product's Android app sends
// "MANUFACTURER / MODEL / RELEASE / sdkVer / Android".
func guessClient(ua string) string {
	l := strings.ToLower(ua)
	switch {
	case l == "":
		return ""
	case strings.HasSuffix(l, "/ android") || strings.Contains(l, "okhttp"):
		return "android"
	case strings.Contains(l, "cfnetwork") || strings.Contains(l, "darwin") && !strings.Contains(l, "mozilla"):
		return "ios"
	case strings.Contains(l, "mozilla"):
		return "web"
	}
	return "other"
}

// healthReason names why the store is unhealthy, in words fit for anyone
// who can reach /healthz: the kind of trouble, never a path or a cause,
// which go to the log.
func healthReason(err error) string {
	switch {
	case errors.Is(err, auth.ErrStoreDamaged):
		return "database damaged"
	case errors.Is(err, auth.ErrStoreWriteFailed):
		return "database write failed"
	case errors.Is(err, auth.ErrStoreChecking):
		return "database check running"
	}
	return "database unavailable"
}

// clip bounds a header value kept in the store.
func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func (s *server) healthz(c *gin.Context) {
	if err := s.svc.Health(c.Request.Context()); err != nil {
		s.log.Error("health check failed", "err", err)
		c.JSON(http.StatusServiceUnavailable, gin.H{"status": "unavailable", "reason": healthReason(err)})
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}
