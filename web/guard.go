package web

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"vmsauth/auth"
	"vmsauth/captcha"
)

// admit runs the login throttle for a request naming login (maybe "").
// Refused, it answers 429 in api's envelope and returns false. Admitted, it
// sets the budget headers and returns the attempt, which counts as a
// failure of login unless the handler calls Succeeded.
func (s *server) admit(c *gin.Context, api auth.API, login string) (*auth.Attempt, bool) {
	if s.throttle == nil {
		return &auth.Attempt{}, true
	}
	d, att := s.throttle.Begin(c.Request.Context(), c.ClientIP(), login)
	s.reportRefusals(s.throttle.Ended())
	if !d.Allowed {
		s.metrics.login(api, "failed", 1)
		if d.First {
			s.logRefused(c, api, login, d)
		}
		s.tooMany(c, api, d)
		return nil, false
	}
	setRateHeaders(c, d)
	return att, true
}

// logRefused records the first refusal of a lock in the log and the audit
// trail. The refusals after it are only counted, and reportRefusals writes
// how many when the lock ends: a flood of 429s costs neither disk nor log.
func (s *server) logRefused(c *gin.Context, api auth.API, login string, d auth.Decision) {
	login = auth.Clip(login)
	s.log.Warn("login throttled; further refusals are counted until the window ends",
		"api", api, "login", login, "ip", c.ClientIP(), "by", d.Kind)
	if s.audit != nil {
		s.audit.RecordThrottled(auth.AuditEntry{IP: c.ClientIP(), Login: login, API: api, Result: "failed",
			Reason: "throttled (" + d.Kind + ")"})
	}
}

// reportRefusals writes one log line and one audit entry for each lock
// that ended, with the number of requests it refused. The entry names no
// API: the throttle is shared by all three.
func (s *server) reportRefusals(ended []auth.Refusal) {
	for _, r := range ended {
		login := ""
		if r.Kind == "login" {
			login = r.Label
		}
		s.log.Warn("throttled requests", "by", r.Kind, "key", r.Label, "ip", r.IP,
			"refused", r.Count, "since", r.Since.Format(time.RFC3339))
		if s.audit != nil {
			s.audit.RecordThrottled(auth.AuditEntry{IP: r.IP, Login: login, Result: "failed",
				Reason: fmt.Sprintf("throttled (%s): %d requests refused since %s", r.Kind, r.Count, r.Since.Format(time.RFC3339))})
		}
	}
}

func setRateHeaders(c *gin.Context, d auth.Decision) {
	c.Header("X-RateLimit-Limit", strconv.Itoa(d.Limit))
	c.Header("X-RateLimit-Remaining", strconv.Itoa(d.Remaining))
}

// tooMany answers 429 with Retry-After and X-RateLimit-Reset, as Laravel's
// throttle does.
func (s *server) tooMany(c *gin.Context, api auth.API, d auth.Decision) {
	s.metrics.throttle(api, 1)
	setRateHeaders(c, d)
	c.Header("Retry-After", strconv.Itoa(d.RetryAfter(s.svc.Now())))
	c.Header("X-RateLimit-Reset", strconv.FormatInt(d.Reset.Unix(), 10))
	if api == auth.APIIntegration {
		integrationError(c, http.StatusTooManyRequests, codeTooMany)
		return
	}
	message(c, http.StatusTooManyRequests, "too_many")
}

// captchaRoutes serves the seed product's "Getting captcha" endpoint and
// an audio version of the same digits.
func (s *server) captchaRoutes(r *gin.Engine) {
	if s.captchas == nil {
		return
	}
	r.GET("/api/v1/captcha", s.newCaptcha)
	r.GET("/api/v1/captcha/:key/audio", s.captchaAudio)
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
