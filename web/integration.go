package web

import (
	"errors"
	"mime"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"vmsauth/auth"
)

// Integration API error codes: seed 002's, and the seed product's token
// codes. Statuses without a code of their own use the status as the code.
const (
	codeJSON           = 110
	codeContentType    = 111
	codeAuthData       = 1005
	codeBadCredentials = 1006
	codeTokenInvalid   = 1007
	codeTokenMissing   = 1008
	codeTokenExpired   = 1009
	codeForbidden      = http.StatusForbidden
	codeNotFound       = http.StatusNotFound
	codeMethod         = http.StatusMethodNotAllowed
	codeBadBody        = http.StatusBadRequest
	codeTimeout        = http.StatusRequestTimeout
	codeTooLarge       = http.StatusRequestEntityTooLarge
	codeTooMany        = http.StatusTooManyRequests
	codeInternal       = http.StatusInternalServerError
	codeUnavailable    = http.StatusServiceUnavailable
)

var integrationMessages = map[int]string{
	codeJSON:           "JSON is not valid.",
	codeContentType:    "Invalid data format (Content-type).",
	codeAuthData:       "Invalid authorization data.",
	codeBadCredentials: "Bad credentials.",
	codeTokenInvalid:   "Your token is invalid.",
	codeTokenMissing:   "Missing token.",
	codeTokenExpired:   "Your token is expired.",
	codeForbidden:      "Forbidden.",
	codeNotFound:       "Not found.",
	codeMethod:         "Method not allowed.",
	codeBadBody:        "Request body could not be read.",
	codeTimeout:        "Request body took too long to arrive.",
	codeTooLarge:       "Request body is too large.",
	codeTooMany:        "Too Many Attempts.",
	codeInternal:       "Internal Server Error.",
	codeUnavailable:    "Service Unavailable. Try again later.",
}

// integrationError answers seed 002's envelope with one error: the seed
// returns only the first error found.
func integrationError(c *gin.Context, status, code int) {
	type item struct {
		Error   int    `json:"error"`
		Message string `json:"message"`
	}
	c.AbortWithStatusJSON(status, gin.H{"errors": []item{{code, integrationMessages[code]}}})
}

func (s *server) integrationRoutes(r *gin.Engine) {
	g := r.Group("/v1", useEnvelope(s.integration))
	g.POST("/login_check", noStore, s.integrationLogin)
	g.POST("/token/refresh", noStore, s.integrationRefresh)
	g.GET("/me", s.requireToken(auth.APIIntegration), s.integrationMe)
	g.POST("/logout", s.requireToken(auth.APIIntegration), s.integrationLogout)
}

// integrationBody reads the capped body; a body that cannot be read is
// answered here (clientFault, through internalError).
func (s *server) integrationBody(c *gin.Context) ([]byte, bool) {
	body, err := readBody(c)
	if err != nil {
		s.internalError(c, err)
		return nil, false
	}
	return body, true
}

// integrationFields checks what seed 002 checks, in its order: the content
// type (111), then the JSON (110); then it reads the named string fields,
// which must all be present and non-empty (1005).
func integrationFields(c *gin.Context, body []byte, names ...string) ([]string, bool) {
	mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if err != nil || mt != "application/json" {
		integrationError(c, http.StatusBadRequest, codeContentType)
		return nil, false
	}
	fields, ok := jsonObject(body)
	if !ok {
		integrationError(c, http.StatusBadRequest, codeJSON)
		return nil, false
	}
	out := make([]string, len(names))
	for i, name := range names {
		v, present, ok := stringField(fields, name)
		if !present || !ok || v == "" {
			integrationError(c, http.StatusBadRequest, codeAuthData)
			return nil, false
		}
		out[i] = v
	}
	return out, true
}

// integrationLogin is seed 002's POST /v1/login_check. Throttling comes
// first, on whatever username the body names, so that malformed requests
// count against the client's budget too.
func (s *server) integrationLogin(c *gin.Context) {
	body, ok := s.integrationBody(c)
	if !ok {
		return
	}
	fields, _ := jsonObject(body)
	named, _, _ := stringField(fields, "username")
	att, ok := s.admit(c, auth.APIIntegration, named)
	if !ok {
		return
	}
	f, ok := integrationFields(c, body, "username", "password")
	if !ok {
		att.Succeeded() // no password was tried
		return
	}
	issued, err := s.passwordLogin(c, att, auth.LoginRequest{API: auth.APIIntegration, Login: f[0], Password: f[1]})
	switch {
	case err == nil:
		s.tokenPair(c, issued)
	case errors.Is(err, auth.ErrBadCredentials), errors.Is(err, auth.ErrAccountDisabled),
		errors.Is(err, auth.ErrAccountExpired), errors.Is(err, auth.ErrNoAccess):
		// Seed 002 has one failure code; a disabled or expired account is
		// not told apart from a wrong password.
		integrationError(c, http.StatusUnauthorized, codeBadCredentials)
	default:
		s.internalError(c, err)
	}
}

// integrationRefresh trades a refresh token for a new pair.
func (s *server) integrationRefresh(c *gin.Context) {
	body, ok := s.integrationBody(c)
	if !ok {
		return
	}
	f, ok := integrationFields(c, body, "refresh_token")
	if !ok {
		return
	}
	issued, err := s.svc.Refresh(c.Request.Context(), f[0], clientMeta(c))
	if err != nil {
		if errors.Is(err, auth.ErrRefreshReused) {
			s.log.Warn("refresh token reused; chain ended", "ip", c.ClientIP())
		}
		s.integrationTokenError(c, err)
		return
	}
	s.tokenPair(c, issued)
}

// tokenPair answers a new token pair with its creation time, seed 002's
// required "date": in the body (RFC 3339 with the box's offset), as the
// seed's field list has it, and in the Date header, for clients written
// against the seed's example body, which shows only the two tokens.
func (s *server) tokenPair(c *gin.Context, issued *auth.Issued) {
	created := issued.Session.CreatedAt
	c.Header("Date", created.UTC().Format(http.TimeFormat))
	c.JSON(http.StatusOK, struct {
		Token        string `json:"token"`
		RefreshToken string `json:"refresh_token"`
		Date         string `json:"date"`
	}{issued.Token, issued.RefreshToken, created.Local().Format(time.RFC3339)})
}

// integrationTokenError maps token errors to the seed product's codes.
func (s *server) integrationTokenError(c *gin.Context, err error) {
	switch {
	case errors.Is(err, auth.ErrTokenMissing):
		integrationError(c, http.StatusUnauthorized, codeTokenMissing)
	case errors.Is(err, auth.ErrTokenExpired):
		integrationError(c, http.StatusUnauthorized, codeTokenExpired)
	case errors.Is(err, auth.ErrTokenInvalid), errors.Is(err, auth.ErrRefreshReused):
		integrationError(c, http.StatusUnauthorized, codeTokenInvalid)
	default:
		s.internalError(c, err)
	}
}

// integrationLogout ends the bearer token's session and, with it, its
// whole refresh chain (see auth.Service.Logout). It reads no body.
func (s *server) integrationLogout(c *gin.Context) {
	sess, _ := current(c)
	if err := s.svc.Logout(c.Request.Context(), sess); err != nil {
		s.internalError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

// integrationMe lets an integration check its token.
func (s *server) integrationMe(c *gin.Context) {
	sess, u := current(c)
	c.JSON(http.StatusOK, gin.H{
		"id":         u.ID,
		"username":   u.Login,
		"expires_at": formatTime(sess.ExpiresAt),
	})
}
