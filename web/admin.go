package web

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"vmsauth/auth"
)

func (s *server) adminRoutes(r *gin.Engine) {
	g := r.Group("/api/admin/v1", useEnvelope(s.laravel))
	g.POST("/auth/token", noStore, s.adminLogin)
	authed := g.Group("", s.requireToken(auth.APIAdmin))
	authed.GET("/auth/user", s.adminSelf)
	authed.POST("/auth/logout", s.logout)
	authed.POST("/auth/password", s.changeOwnPassword)
	s.userRoutes(authed)
}

// adminLogin is seed 001's POST /api/admin/v1/auth/token.
func (s *server) adminLogin(c *gin.Context) {
	fields, att, ok := s.beginLogin(c, auth.APIAdmin)
	if !ok {
		return
	}
	errs := fieldErrors{}
	login := requiredString(c, errs, fields, "login")
	password := requiredString(c, errs, fields, "password")
	if fieldsRefused(c, att, errs) {
		return
	}
	issued, err := s.passwordLogin(c, att, auth.LoginRequest{API: auth.APIAdmin, Login: login, Password: password})
	switch {
	case err == nil:
		c.JSON(http.StatusOK, struct {
			User        adminUser `json:"user"`
			ExpiresAt   string    `json:"expires_at"`
			TokenType   string    `json:"token_type"`
			AccessToken string    `json:"access_token"`
		}{s.adminUser(issued.User, issued.Session.ID), formatTime(issued.Session.ExpiresAt), "Bearer", issued.Token})
	case errors.Is(err, auth.ErrNoAccess):
		message(c, http.StatusForbidden, "no_admin")
	default:
		s.laravelError(c, err)
	}
}

func (s *server) adminSelf(c *gin.Context) {
	sess, u := current(c)
	c.JSON(http.StatusOK, s.adminUser(u, sess.ID))
}

// adminUser is seed 001's user object, field for field.
type adminUser struct {
	ID                    int64              `json:"id"`
	Name                  string             `json:"name"`
	Login                 string             `json:"login"`
	CreatedAt             string             `json:"created_at"`
	UpdatedAt             string             `json:"updated_at"`
	ExpiredAt             *string            `json:"expired_at"`
	IsLicenceLimitReached bool               `json:"is_licence_limit_reached"`
	Permissions           []auth.Permission  `json:"permissions"`
	PTZPriority           int                `json:"ptz_priority"`
	AdminCameraGroups     []auth.CameraGroup `json:"admin_camera_groups"`
	DHCPSubnetGroups      []auth.SubnetGroup `json:"dhcp_subnet_groups"`
	AccessTokenID         *string            `json:"access_token_id"`
}

// adminUser renders u; sessionID is the caller's own session when u is the
// caller, else "" (rendered as null, as seed 001 shows).
func (s *server) adminUser(u *auth.User, sessionID string) adminUser {
	out := adminUser{
		ID: u.ID, Name: u.Name, Login: u.Login,
		CreatedAt: formatTime(u.CreatedAt), UpdatedAt: formatTime(u.UpdatedAt),
		IsLicenceLimitReached: s.svc.LicenceLimitReached(),
		Permissions:           auth.PermissionsOf(u),
		PTZPriority:           u.PTZPriority,
		AdminCameraGroups:     u.CameraGroups,
		DHCPSubnetGroups:      u.SubnetGroups,
	}
	if u.ExpiredAt != nil {
		t := formatTime(*u.ExpiredAt)
		out.ExpiredAt = &t
	}
	if sessionID != "" {
		out.AccessTokenID = &sessionID
	}
	if out.AdminCameraGroups == nil {
		out.AdminCameraGroups = []auth.CameraGroup{}
	}
	if out.DHCPSubnetGroups == nil {
		out.DHCPSubnetGroups = []auth.SubnetGroup{}
	}
	return out
}

// changeOwnPassword is POST /api/admin/v1/auth/password
// {"current_password","password"}: the caller changes their own password
// by proving the current one. Each try is throttled like a login of the
// caller's login, and a wrong current password counts as a failed login,
// so a stolen token cannot be used to guess the password faster than the
// login form allows. Success ends every session of the caller, this one
// included: whoever else held a token of theirs is out, and the page
// signs in again with the new password.
func (s *server) changeOwnPassword(c *gin.Context) {
	_, u := current(c)
	fields, ok := s.loginFields(c)
	if !ok {
		return
	}
	att, ok := s.admit(c, auth.APIAdmin, u.Login)
	if !ok {
		return
	}
	errs := fieldErrors{}
	currentPassword := requiredString(c, errs, fields, "current_password")
	password := requiredString(c, errs, fields, "password")
	if fieldsRefused(c, att, errs) {
		return
	}
	err := s.svc.ChangeOwnPassword(c.Request.Context(), u, currentPassword, password)
	if !errors.Is(err, auth.ErrBadCredentials) {
		att.Succeeded()
	}
	switch {
	case err == nil:
		s.log.Info("own password changed; sessions ended", "login", u.Login, "ip", c.ClientIP())
		c.JSON(http.StatusOK, gin.H{"status": "ok"})
	case errors.Is(err, auth.ErrBadCredentials):
		s.logLogin(c, auth.APIAdmin, u.Login, errCurrentPassword)
		invalid(c, fieldErrors{"current_password": {FieldMessage(lang(c), auth.FieldError{Field: "current_password", Code: "current_password"})}})
	default:
		s.laravelError(c, err)
	}
}

// errCurrentPassword is recorded for a wrong current password given to
// change one's own: a password guess like a failed login.
var errCurrentPassword = errors.New("wrong current password")
