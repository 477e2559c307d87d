package web

import (
	"fmt"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"vmsauth/auth"
)

// admit runs the login throttle for a request naming login (maybe "").
// Refused, it answers 429 in the API's envelope and returns false. Admitted, it
// sets the budget headers and returns the attempt, which counts as a
// failure of login unless the handler calls Succeeded.
func (s *server) admit(c *gin.Context, api auth.API, login string) (*auth.Attempt, bool) {
	if s.throttle == nil {
		return &auth.Attempt{}, true
	}
	d, att := s.throttle.Begin(c.Request.Context(), c.ClientIP(), login)
	s.reportRefusals(s.throttle.Ended())
	if d.Err != nil {
		// A site box whose shared counters are out of reach: 503 (or 500
		// for what is not an outage), never a login let through uncounted.
		s.internalError(c, d.Err)
		return nil, false
	}
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
	s.envelope(c).fault(c, faultTooMany)
}
