package web

import (
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"vmsauth/auth"
)

// fault is a failure any endpoint can meet, whatever its API: it carries
// the status and what each envelope says for it (a message key for the
// Laravel envelope, a code for the integration one).
type fault struct {
	status int
	key    string
	code   int
}

var (
	faultNotFound  = fault{http.StatusNotFound, "not_found", codeNotFound}
	faultMethod    = fault{http.StatusMethodNotAllowed, "method", codeMethod}
	faultForbidden = fault{http.StatusForbidden, "forbidden", codeForbidden}
	faultTooMany   = fault{http.StatusTooManyRequests, "too_many", codeTooMany}
	faultTooLarge  = fault{http.StatusRequestEntityTooLarge, "too_large", codeTooLarge}
	faultBadBody   = fault{http.StatusBadRequest, "bad_body", codeBadBody}
	faultTimeout   = fault{http.StatusRequestTimeout, "timeout", codeTimeout}
	faultInternal  = fault{http.StatusInternalServerError, "server_error", codeInternal}
	// faultUnavailable: the store cannot answer now (auth.ErrUnavailable,
	// an etcd site without a majority). An outage: the client may retry.
	faultUnavailable = fault{http.StatusServiceUnavailable, "unavailable", codeUnavailable}
)

// envelope is one API's error format: every error path that is not one
// endpoint's own goes through it, so that no code outside this file asks
// which API a request belongs to. Each API's route group sets its envelope
// once (useEnvelope); handlers find it with server.envelope.
type envelope interface {
	// fault answers f.
	fault(c *gin.Context, f fault)
	// tokenError answers a failed token check (auth.ErrToken*); any other
	// error is answered as the API answers it anywhere else.
	tokenError(c *gin.Context, err error)
}

// laravelEnvelope is the client and admin APIs' format (see laravel.go).
type laravelEnvelope struct{ s *server }

func (laravelEnvelope) fault(c *gin.Context, f fault) {
	if f == faultMethod {
		c.AbortWithStatusJSON(f.status, gin.H{"message": msg(c, f.key,
			":method", c.Request.Method, ":allowed", c.Writer.Header().Get("Allow"))})
		return
	}
	message(c, f.status, f.key)
}

func (e laravelEnvelope) tokenError(c *gin.Context, err error) { e.s.laravelError(c, err) }

// integrationEnvelope is the integration API's numbered codes (see
// integration.go).
type integrationEnvelope struct{ s *server }

func (integrationEnvelope) fault(c *gin.Context, f fault) { integrationError(c, f.status, f.code) }

func (e integrationEnvelope) tokenError(c *gin.Context, err error) {
	e.s.integrationTokenError(c, err)
}

const ctxEnvelope = "vmsauth.envelope"

// useEnvelope is the middleware by which a route group sets its envelope.
func useEnvelope(e envelope) gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Set(ctxEnvelope, e)
		c.Next()
	}
}

// envelope returns the envelope of the request's route group. Routes
// outside the three APIs (the page, /healthz, /auth/verify's own errors)
// answer in Laravel's, as the client API does: they set none, which keeps
// the token check that proxies call for every request free of the cost.
func (s *server) envelope(c *gin.Context) envelope {
	if e, ok := c.Get(ctxEnvelope); ok {
		return e.(envelope)
	}
	return s.laravel
}

// envelopeOf returns api's envelope, for /auth/verify, whose ?api=
// chooses it, and for unrouted.
func (s *server) envelopeOf(api auth.API) envelope {
	if api == auth.APIIntegration {
		return s.integration
	}
	return s.laravel
}

// unrouted answers a request that matched no route (f is faultNotFound) or
// no method of its route (faultMethod). No route group ran, so this is the
// one place that tells the API from the path.
func (s *server) unrouted(f fault) gin.HandlerFunc {
	return func(c *gin.Context) {
		api := auth.APIClient
		if p := c.Request.URL.Path; p == "/v1" || strings.HasPrefix(p, "/v1/") {
			api = auth.APIIntegration
		}
		s.envelopeOf(api).fault(c, f)
	}
}
