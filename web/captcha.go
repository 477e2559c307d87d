package web

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"vmsauth/auth"
	"vmsauth/captcha"
)

// captchaRoutes serves the seed product's "Getting captcha" endpoint and
// an audio version of the same digits.
func (s *server) captchaRoutes(g *gin.RouterGroup) {
	if s.captchas == nil {
		return
	}
	g.GET("/captcha", s.newCaptcha)
	g.GET("/captcha/:key/audio", s.captchaAudio)
}

// captchaAllowed applies the per-IP captcha budget: drawing costs CPU
// (captchas themselves take no memory: their keys carry their state).
func (s *server) captchaAllowed(c *gin.Context) bool {
	d := s.captchaLimit.Take(captchaBudgetKey(c))
	if !d.Allowed {
		s.tooMany(c, auth.APIClient, d)
		return false
	}
	setRateHeaders(c, d)
	c.Header("Cache-Control", "no-store")
	return true
}

// captchaBudgetKey is the one place that says whose captcha budget a
// request spends: the client's throttle key, as for logins (an IPv4
// address, or an IPv6 /64).
func captchaBudgetKey(c *gin.Context) string { return auth.ThrottleKey(c.ClientIP()) }

func (s *server) newCaptcha(c *gin.Context) {
	if !s.captchaAllowed(c) {
		return
	}
	key, png, err := s.captchas.New()
	if err != nil {
		s.internalError(c, err)
		return
	}
	s.metrics.captcha("issued", 1)
	c.JSON(http.StatusOK, struct {
		Sensitive bool   `json:"sensitive"`
		Key       string `json:"key"`
		Img       string `json:"img"`
		TTL       int    `json:"ttl"`
	}{false, key, "data:image/png;base64," + base64.StdEncoding.EncodeToString(png), int(s.captchas.TTL().Seconds())})
}

func (s *server) captchaAudio(c *gin.Context) {
	if !s.captchaAllowed(c) {
		return
	}
	wav, err := s.captchas.Audio(c.Param("key"), lang(c))
	switch {
	case errors.Is(err, captcha.ErrNotFound):
		message(c, http.StatusNotFound, "not_found")
	case err != nil:
		s.internalError(c, err)
	default:
		c.Data(http.StatusOK, "audio/wav", wav)
	}
}

// checkCaptcha applies the captcha to a client login that passed field
// validation: a login within its session-limit grace skips it, anything
// else must solve it. It reports whether the login may go on; a wrong
// answer is answered 422 here.
func (s *server) checkCaptcha(c *gin.Context, login, sessionID, key, answer string) bool {
	if !s.requireCaptcha {
		return true
	}
	if sessionID != "" && s.captchas.UseGrace(login, key) {
		return true
	}
	ok, err := s.captchas.Verify(key, answer)
	if err != nil {
		s.internalError(c, err)
		return false
	}
	if !ok {
		s.metrics.captcha("failed", 1)
		invalidField(c, "captcha", "captcha_wrong")
		return false
	}
	s.metrics.captcha("solved", 1)
	return true
}

// captchaFields validates the captcha fields of a client login into errs:
// both are required while captchas are on, unless the login is within its
// session-limit grace, which needs the key the 419 returned: knowing the
// login is not enough to skip the captcha.
func (s *server) captchaFields(c *gin.Context, errs fieldErrors, fields map[string]json.RawMessage, login, sessionID string) (key, answer string) {
	if !s.requireCaptcha {
		return "", ""
	}
	key, _, keyOK := stringField(fields, "key")
	if sessionID != "" && keyOK && s.captchas.HasGrace(login, key) {
		return key, ""
	}
	answer = requiredString(c, errs, fields, "captcha")
	key = requiredString(c, errs, fields, "key")
	return key, answer
}
