package web

import (
	"log/slog"
	"time"

	"github.com/gin-gonic/gin"
)

// The forward-auth listener (--forward-auth-listen) is for the reverse proxy
// on the box itself: nginx auth_request, Caddy forward_auth and Traefik
// forwardAuth ask /auth/verify once per request they protect, and over
// HTTPS each subrequest paid for a TLS handshake (a protected location
// served a fifth of the unprotected rate). On loopback or a unix socket
// there is no one to hide the traffic from, so it is plain HTTP with
// keep-alive, and it serves only what a proxy needs: the same handlers as
// the main listener, nothing that logs in or manages users.

// forwardAuthRouter serves /auth/verify and /healthz with the main router's
// handlers, so that both listeners answer alike.
func (s *server) forwardAuthRouter() *ForwardAuth {
	r := gin.New()
	// The peer is always the proxy on this box. Nothing here uses the client
	// address, and X-Forwarded-For is believed from no one, so a header
	// cannot reach the logs as an address.
	_ = r.SetTrustedProxies(nil)
	r.HandleMethodNotAllowed = true
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	// No body limit: no route here reads a body, and unread bodies are
	// bounded by the server's ReadTimeout.
	r.Use(s.metrics.observe, s.logForwardAuth, s.recover)
	r.NoRoute(s.unrouted(faultNotFound))
	r.NoMethod(s.unrouted(faultMethod))
	r.GET("/auth/verify", bodylessSuccess, s.verify)
	r.GET("/healthz", s.healthz)
	return &ForwardAuth{s: s, router: r}
}

// bodylessSuccess sends verify's 2xx answer with an empty body
// (Content-Length: 0), the same status and headers. nginx keeps an upstream connection for
// the next auth_request subrequest only when the answer has no body (the
// subrequest reads headers only, and a body left unread spoils the
// connection): with verify's {"status":"ok"}, every check opened and closed
// a connection, and accept, close and a fresh goroutine's stack took a
// quarter of vmsauth's time per check. No proxy passes a 2xx body on
// (Caddy and Traefik pass the answer's body only for a refusal), so
// refusals keep theirs, for the client to read.
func bodylessSuccess(c *gin.Context) {
	c.Writer = bodyless{c.Writer}
	c.Next()
}

// bodyless is a ResponseWriter that drops what a 2xx answer writes.
type bodyless struct{ gin.ResponseWriter }

func (w bodyless) Write(b []byte) (int, error) {
	if w.Status() < 300 {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

func (w bodyless) WriteString(s string) (int, error) {
	if w.Status() < 300 {
		return len(s), nil
	}
	return w.ResponseWriter.WriteString(s)
}

// logForwardAuth is logRequests for the forward-auth listener. Its peer is
// the proxy, not a client, and over a unix socket Gin has no address for it
// (c.ClientIP answers "<nil>"), so the line names the peer as the socket
// gave it.
func (s *server) logForwardAuth(c *gin.Context) {
	if !s.log.Enabled(c.Request.Context(), slog.LevelDebug) {
		c.Next()
		return
	}
	start := time.Now()
	c.Next()
	peer := c.Request.RemoteAddr
	if peer == "" || peer == "@" {
		peer = "unix socket"
	}
	s.log.Debug("request", "listener", "forward-auth", "method", c.Request.Method, "path", c.Request.URL.Path,
		"status", c.Writer.Status(), "peer", peer, "duration", time.Since(start))
}

// forwardAuthIdle is how long an idle proxy connection is kept. It is longer
// than the proxies keep theirs (nginx upstream keepalive_timeout 60 s,
// Traefik 90 s, Caddy 2 min), so the proxy closes an idle connection first
// and never sends a subrequest on one vmsauth is closing.
const forwardAuthIdle = 5 * time.Minute
