package web

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/gin-gonic/gin"

	"vmsauth/auth"
)

// beginLogin reads a Laravel-style login body and admits it past the
// throttle, which comes before any field is checked.
func (s *server) beginLogin(c *gin.Context, api auth.API) (map[string]json.RawMessage, *auth.Attempt, bool) {
	fields, ok := s.loginFields(c)
	if !ok {
		return nil, nil, false
	}
	named, _, _ := stringField(fields, "login")
	att, ok := s.admit(c, api, named)
	return fields, att, ok
}

// fieldsRefused answers 422 with errs, if there are any, and reports
// whether it did. No password was tried, so the attempt does not count as
// a failure of the login.
func fieldsRefused(c *gin.Context, att *auth.Attempt, errs fieldErrors) bool {
	if len(errs) == 0 {
		return false
	}
	att.Succeeded()
	invalid(c, errs)
	return true
}

// passwordLogin is what the three login APIs share once a login is past
// the throttle (admit) and its fields are read: the password and account
// checks (auth), the log, audit trail and metrics (logLogin), and the
// throttle's count, where only a wrong password counts as a failure. The
// caller answers err in its API's own terms.
func (s *server) passwordLogin(c *gin.Context, att *auth.Attempt, req auth.LoginRequest) (*auth.Issued, error) {
	req.Meta = clientMeta(c)
	issued, err := s.svc.Login(c.Request.Context(), req)
	s.logLogin(c, req.API, req.Login, err)
	if !errors.Is(err, auth.ErrBadCredentials) {
		att.Succeeded()
	}
	return issued, err
}

// loginFields reads a Laravel-style login body. Like Laravel, a body that is
// not a JSON object counts as empty, so it is answered field by field with
// "required" rather than with a parse error.
func (s *server) loginFields(c *gin.Context) (map[string]json.RawMessage, bool) {
	body, err := readBody(c)
	if err != nil {
		s.laravelError(c, err)
		return nil, false
	}
	fields, _ := jsonObject(body)
	return fields, true
}

// requiredString reads a required string field into errs' rules. Like
// Laravel, an empty string counts as missing.
func requiredString(c *gin.Context, errs fieldErrors, fields map[string]json.RawMessage, name string) string {
	v, present, ok := stringField(fields, name)
	switch {
	case !ok:
		errs.add(c, name, "string", "")
	case !present || v == "":
		errs.add(c, name, "required", "")
	}
	return v
}

// logLogin records a login attempt in the log, the audit trail and the
// metrics. Passwords and tokens are never recorded.
func (s *server) logLogin(c *gin.Context, api auth.API, login string, err error) {
	// A client may name a 64 KiB login; slog quotes it (%q) whenever it
	// holds anything but printable characters, so it cannot forge a line.
	login = auth.Clip(login)
	result, why := "ok", reason(err)
	if err != nil {
		result = "failed"
		s.log.Warn("login failed", "api", api, "login", login, "ip", c.ClientIP(), "reason", why)
	} else {
		s.log.Info("login", "api", api, "login", login, "ip", c.ClientIP())
	}
	s.metrics.login(api, result, 1)
	if s.audit != nil {
		s.audit.Record(auth.AuditEntry{IP: c.ClientIP(), Login: login, API: api, Result: result, Reason: why})
	}
}

// reason names why a login failed, in words fit for an audit trail.
func reason(err error) string {
	var limit *auth.SessionLimitError
	switch {
	case err == nil:
		return ""
	case errors.Is(err, auth.ErrBadCredentials):
		return "bad credentials"
	case errors.Is(err, auth.ErrAccountDisabled):
		return "account disabled"
	case errors.Is(err, auth.ErrAccountExpired):
		return "account expired"
	case errors.Is(err, auth.ErrNoAccess):
		return "no access to this API"
	case errors.As(err, &limit):
		return "session limit reached"
	case errors.Is(err, auth.ErrSessionNotFound):
		return "unknown session_id"
	case errors.Is(err, errCaptcha):
		return "wrong captcha"
	case errors.Is(err, errCurrentPassword):
		return "wrong current password"
	case errors.Is(err, context.Canceled):
		return "client gave up"
	case errors.Is(err, auth.ErrUnavailable):
		return "store unavailable"
	}
	return "internal error"
}
