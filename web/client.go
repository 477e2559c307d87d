package web

import (
	"errors"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"vmsauth/auth"
	"vmsauth/captcha"
)

// statusSessionLimit is the seed product's answer when a login would exceed
// the user's session limit (Laravel's "page expired" code, reused).
const statusSessionLimit = 419

// onlineWithin is how recently a session must have been used to show as
// online in session lists.
const onlineWithin = 5 * time.Minute

func (s *server) clientRoutes(r *gin.Engine) {
	g := r.Group("/api/v1", useEnvelope(s.laravel))
	g.POST("/token", noStore, s.clientLogin)
	s.captchaRoutes(g)
	authed := g.Group("", s.requireToken(auth.APIClient))
	authed.GET("/users/self", s.clientSelf)
	authed.POST("/logout", s.logout)
	authed.GET("/sessions", s.clientSessions)
	authed.POST("/sessions/:id", s.clientEndSession)
	authed.DELETE("/sessions/:id", s.clientEndSession)
}

// clientLogin is seed 000's POST /api/v1/token. Its checks run in the
// seed's order: throttling, fields, captcha, password, account, session.
func (s *server) clientLogin(c *gin.Context) {
	fields, att, ok := s.beginLogin(c, auth.APIClient)
	if !ok {
		return
	}
	errs := fieldErrors{}
	login := requiredString(c, errs, fields, "login")
	password := requiredString(c, errs, fields, "password")
	// The seed's apps send "null" (a string) when they have no session id.
	sessionID, _, isString := stringField(fields, "session_id")
	if !isString {
		errs.add(c, "session_id", "string", "")
	}
	if sessionID == "null" {
		sessionID = ""
	}
	key, answer := s.captchaFields(c, errs, fields, login, sessionID)
	if fieldsRefused(c, att, errs) {
		return
	}
	if !s.checkCaptcha(c, login, sessionID, key, answer) {
		s.logLogin(c, auth.APIClient, login, errCaptcha)
		return
	}

	issued, err := s.passwordLogin(c, att, auth.LoginRequest{
		API: auth.APIClient, Login: login, Password: password, ReplaceSession: sessionID,
	})
	var limit *auth.SessionLimitError
	switch {
	case err == nil:
		c.JSON(http.StatusOK, struct {
			User        clientUser `json:"user"`
			AccessToken string     `json:"access_token"`
		}{s.clientUser(issued.User, issued.Session.ID), issued.Token})
	case errors.As(err, &limit):
		s.sessionLimit(c, limit, login, key)
	case errors.Is(err, auth.ErrSessionNotFound):
		invalid(c, fieldErrors{"session_id": {FieldMessage(lang(c), auth.FieldError{Field: "session_id", Code: "exists"})}})
	case errors.Is(err, auth.ErrNoAccess):
		invalidField(c, "login", "no_client")
	default:
		s.laravelError(c, err)
	}
}

// errCaptcha is logged for a login refused for its captcha.
var errCaptcha = errors.New("wrong captcha")

// sessionLimit answers 419. While captchas are on, the captcha just solved
// stays good for a retry with a session_id, for captcha.Grace.
func (s *server) sessionLimit(c *gin.Context, e *auth.SessionLimitError, login, key string) {
	current := ""
	if tok := bearer(c); tok != "" {
		if sess, _, err := s.svc.Authenticate(tok, auth.APIClient, ""); err == nil {
			current = sess.ID
		}
	}
	body := sessionLimitBody{
		Sessions:      s.sessionList(e.Sessions, current),
		SessionsLimit: e.Limit,
		SessionsCount: len(e.Sessions),
	}
	if s.requireCaptcha {
		s.captchas.GrantGrace(login, key)
		grace := int(captcha.Grace.Seconds())
		body.Key, body.CaptchaWillRequiredIn = &key, &grace
	}
	c.JSON(statusSessionLimit, body)
}

// sessionLimitBody is seed 000's 419 answer.
type sessionLimitBody struct {
	Sessions      []sessionJSON `json:"sessions"`
	SessionsLimit int           `json:"sessions_limit"`
	SessionsCount int           `json:"sessions_count"`
	// Present only while captchas are on.
	Key                   *string `json:"key,omitempty"`
	CaptchaWillRequiredIn *int    `json:"captcha_will_required_in,omitempty"`
}

// requireToken authenticates the bearer token of api and keeps its session
// and user in the context for the handler.
func (s *server) requireToken(api auth.API) gin.HandlerFunc {
	return func(c *gin.Context) {
		sess, u, err := s.svc.Authenticate(bearer(c), api, c.ClientIP())
		if err != nil {
			s.envelope(c).tokenError(c, err)
			return
		}
		c.Set(ctxSession, sess)
		c.Set(ctxUser, u)
		c.Next()
	}
}

const (
	ctxSession = "vmsauth.session"
	ctxUser    = "vmsauth.user"
)

func current(c *gin.Context) (*auth.Session, *auth.User) {
	return c.MustGet(ctxSession).(*auth.Session), c.MustGet(ctxUser).(*auth.User)
}

func (s *server) clientSelf(c *gin.Context) {
	sess, u := current(c)
	c.JSON(http.StatusOK, s.clientUser(u, sess.ID))
}

// logout ends the caller's own session, on any API.
func (s *server) logout(c *gin.Context) {
	sess, _ := current(c)
	if err := s.svc.Logout(sess); err != nil {
		s.laravelError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

func (s *server) clientSessions(c *gin.Context) {
	sess, u := current(c)
	list, err := s.svc.ClientSessions(u.ID)
	if err != nil {
		s.laravelError(c, err)
		return
	}
	c.JSON(http.StatusOK, s.sessionList(list, sess.ID))
}

func (s *server) clientEndSession(c *gin.Context) {
	_, u := current(c)
	if err := s.svc.EndClientSession(u.ID, c.Param("id")); err != nil {
		s.laravelError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

// permRef is a permission as the client API lists it.
type permRef struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

// clientUser is seed 000's user object, field for field.
type clientUser struct {
	ID                int64          `json:"id"`
	Login             string         `json:"login"`
	Name              string         `json:"name"`
	ParentID          *int64         `json:"parent_id"`
	Permissions       []permRef      `json:"permissions"`
	CreatedAt         string         `json:"created_at"`
	UpdatedAt         string         `json:"updated_at"`
	AccessTokenID     string         `json:"access_token_id"`
	CanUpdatePassword bool           `json:"can_update_password"`
	AnalyticLicense   []auth.License `json:"analytic_license"`
}

func (s *server) clientUser(u *auth.User, sessionID string) clientUser {
	perms := []permRef{}
	for _, p := range auth.PermissionsOf(u) {
		perms = append(perms, permRef{ID: p.ID, Name: p.Name})
	}
	lic := s.svc.Licenses()
	if lic == nil {
		lic = []auth.License{}
	}
	return clientUser{
		ID: u.ID, Login: u.Login, Name: u.Name, ParentID: u.ParentID,
		Permissions: perms,
		CreatedAt:   formatTime(u.CreatedAt), UpdatedAt: formatTime(u.UpdatedAt),
		AccessTokenID: sessionID, CanUpdatePassword: u.CanUpdatePassword,
		AnalyticLicense: lic,
	}
}

// sessionJSON is a session as seed 000's 419 answer lists it.
type sessionJSON struct {
	ID        string `json:"id"`
	IsCurrent bool   `json:"is_current"`
	UserAgent string `json:"user_agent"`
	Client    string `json:"client"`
	Online    bool   `json:"online"`
	IP        string `json:"ip"`
	Last      string `json:"last"`
}

func (s *server) sessionList(list []*auth.Session, currentID string) []sessionJSON {
	now := s.svc.Now()
	out := make([]sessionJSON, 0, len(list))
	for _, sess := range list {
		out = append(out, sessionJSON{
			ID: sess.ID, IsCurrent: sess.ID == currentID,
			UserAgent: sess.UserAgent, Client: sess.Client,
			Online: now.Sub(sess.LastSeen) < onlineWithin,
			IP:     sess.IP, Last: formatTime(sess.LastSeen),
		})
	}
	return out
}
