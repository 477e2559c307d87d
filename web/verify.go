package web

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"vmsauth/auth"
)

// verifyOK is the body of every 200 from verify, encoded once: it never
// changes, and encoding it per check showed in the token-check profile.
var verifyOK = []byte(`{"status":"ok"}`)

// verifyContentType is verify's Content-Type header value, shared by every
// answer (nothing appends to a header's values once it is written).
var verifyContentType = []string{"application/json; charset=utf-8"}

// verify answers nginx auth_request and Traefik forwardAuth: 200 with the
// user in X-Auth-* headers for a live token of any API, 401 otherwise, 403
// when ?permission= names one the user lacks. ?api= restricts the token to
// one API; with api=integration, errors use the integration envelope.
func (s *server) verify(c *gin.Context) {
	api, permission, ok := verifyParams(c)
	if !ok {
		return
	}
	// The user is shared with the store's cache (no copy per check): read it only.
	sess, u, err := s.svc.Verify(c.Request.Context(), bearer(c), api)
	if err != nil {
		s.envelopeOf(api).tokenError(c, err)
		return
	}
	if permission != "" && !u.Has(permission) {
		s.envelopeOf(api).fault(c, faultForbidden)
		return
	}
	// The four values share one allocation (each a full slice of it, so
	// that an append cannot reach the next); the keys are canonical.
	v := make([]string, 4)
	v[0], v[1], v[2], v[3] = strconv.FormatInt(u.ID, 10), u.Login, string(sess.API), joinPermissions(u.Permissions)
	h := c.Writer.Header()
	h["X-Auth-User-Id"], h["X-Auth-Login"], h["X-Auth-Realm"], h["X-Auth-Permissions"] = v[0:1:1], v[1:2:2], v[2:3:3], v[3:4:4]
	h["Content-Type"] = verifyContentType
	c.Status(http.StatusOK)
	_, _ = c.Writer.Write(verifyOK)
}

// joinPermissions is strings.Join(p, ","), without allocating for none or
// one.
func joinPermissions(p []string) string {
	switch len(p) {
	case 0:
		return ""
	case 1:
		return p[0]
	}
	return strings.Join(p, ",")
}

// verifyParams reads ?api= and ?permission=, answering 400 for a query
// that does not say one thing clearly. Each may be absent, or given once
// with a value: a check that reads only the first of two values, or skips
// an empty one, would let a proxy rule that names a permission pass
// without it. The query is parsed strictly for the same reason: Go's
// lenient parser silently drops a pair it cannot read (one with a
// semicolon, say), and with it the permission.
func verifyParams(c *gin.Context) (api auth.API, permission string, ok bool) {
	if c.Request.URL.RawQuery == "" {
		return "", "", true // nothing to parse: spare the map
	}
	q, err := url.ParseQuery(c.Request.URL.RawQuery)
	if err != nil {
		message(c, http.StatusBadRequest, "bad_query")
		return "", "", false
	}
	if v, given := q["api"]; given {
		a, known := auth.ParseAPI(v[0])
		if len(v) != 1 || !known {
			message(c, http.StatusBadRequest, "bad_api")
			return "", "", false
		}
		api = a
	}
	if v, given := q["permission"]; given {
		if len(v) != 1 || v[0] == "" {
			message(c, http.StatusBadRequest, "bad_permission")
			return "", "", false
		}
		permission = v[0]
	}
	return api, permission, true
}
