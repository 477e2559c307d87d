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

// verify answers nginx auth_request and Traefik forwardAuth: 200 with the
// user in X-Auth-* headers for a live token of any API, 401 otherwise, 403
// when ?permission= names one the user lacks. ?api= restricts the token to
// one API; with api=integration, errors use the integration envelope.
func (s *server) verify(c *gin.Context) {
	api, permission, ok := verifyParams(c)
	if !ok {
		return
	}
	sess, u, err := s.svc.Authenticate(bearer(c), api, "")
	if err != nil {
		s.envelopeOf(api).tokenError(c, err)
		return
	}
	if permission != "" && !u.Has(permission) {
		s.envelopeOf(api).fault(c, faultForbidden)
		return
	}
	h := c.Writer.Header()
	h.Set("X-Auth-User-Id", strconv.FormatInt(u.ID, 10))
	h.Set("X-Auth-Login", u.Login)
	h.Set("X-Auth-Realm", string(sess.API))
	h.Set("X-Auth-Permissions", strings.Join(u.Permissions, ","))
	c.Data(http.StatusOK, "application/json; charset=utf-8", verifyOK)
}

// verifyParams reads ?api= and ?permission=, answering 400 for a query
// that does not say one thing clearly. Each may be absent, or given once
// with a value: a check that reads only the first of two values, or skips
// an empty one, would let a proxy rule that names a permission pass
// without it. The query is parsed strictly for the same reason: Go's
// lenient parser silently drops a pair it cannot read (one with a
// semicolon, say), and with it the permission.
func verifyParams(c *gin.Context) (api auth.API, permission string, ok bool) {
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
