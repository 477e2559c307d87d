package web

import (
	"net/http"
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
	var api auth.API
	if q := c.Query("api"); q != "" {
		a, ok := auth.ParseAPI(q)
		if !ok {
			message(c, http.StatusBadRequest, "bad_api")
			return
		}
		api = a
	}
	sess, u, err := s.svc.Authenticate(bearer(c), api, "")
	if err != nil {
		s.tokenError(c, api, err)
		return
	}
	if p := c.Query("permission"); p != "" && !u.Has(p) {
		if api == auth.APIIntegration {
			integrationError(c, http.StatusForbidden, codeForbidden)
		} else {
			message(c, http.StatusForbidden, "forbidden")
		}
		return
	}
	h := c.Writer.Header()
	h.Set("X-Auth-User-Id", strconv.FormatInt(u.ID, 10))
	h.Set("X-Auth-Login", u.Login)
	h.Set("X-Auth-Realm", string(sess.API))
	h.Set("X-Auth-Permissions", strings.Join(u.Permissions, ","))
	c.Data(http.StatusOK, "application/json; charset=utf-8", verifyOK)
}
