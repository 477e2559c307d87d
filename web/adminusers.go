package web

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"vmsauth/auth"
)

// Paging bounds of the users list.
const (
	defaultPerPage = 25
	maxPerPage     = 100
)

// userRoutes is the admin API behind the admin page, each endpoint guarded
// by a permission of the catalog.
func (s *server) userRoutes(g *gin.RouterGroup) {
	g.GET("/users", need(auth.PermUsersView), s.listUsers)
	g.POST("/users", need(auth.PermUsersCreate), s.createUser)
	g.GET("/users/:id", need(auth.PermUsersView), s.withUser, s.showUser)
	g.PATCH("/users/:id", need(auth.PermUsersUpdate), s.withUser, s.patchUser)
	g.DELETE("/users/:id", need(auth.PermUsersDestroy), s.withUser, s.deleteUser)
	g.POST("/users/:id/password", need(auth.PermUsersUpdate), s.withUser, s.setPassword)
	g.GET("/users/:id/sessions", need(auth.PermSessionsView), s.withUser, s.userSessions)
	g.DELETE("/sessions/:id", need(auth.PermSessionsDestroy), s.endSession)
	g.GET("/permissions", need(auth.PermPermissionsView), s.permissions)
	g.GET("/audit", need(auth.PermAuditView), s.auditTrail)
}

// need answers 403 unless the caller holds the permission.
func need(permission string) gin.HandlerFunc {
	return func(c *gin.Context) {
		if _, u := current(c); !u.Has(permission) {
			message(c, http.StatusForbidden, "forbidden")
		}
	}
}

const ctxTarget = "vmsauth.target"

// withUser loads the user named by :id, answering 404 for none.
func (s *server) withUser(c *gin.Context) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		message(c, http.StatusNotFound, "not_found")
		return
	}
	u, err := s.svc.User(c.Request.Context(), id)
	if err != nil {
		s.laravelError(c, err)
		return
	}
	c.Set(ctxTarget, u)
}

func target(c *gin.Context) *auth.User { return c.MustGet(ctxTarget).(*auth.User) }

// managedUser is the admin shape of seed 001 with what the admin page
// needs to edit a user.
type managedUser struct {
	adminUser
	ParentID          *int64     `json:"parent_id"`
	APIs              []auth.API `json:"apis"`
	Disabled          bool       `json:"disabled"`
	Expired           bool       `json:"expired"`
	SessionsLimit     int        `json:"sessions_limit"`
	CanUpdatePassword bool       `json:"can_update_password"`
}

func (s *server) managed(u *auth.User) managedUser {
	return managedUser{
		adminUser: s.adminUser(u, ""), ParentID: u.ParentID, APIs: u.APIs,
		Disabled: u.Disabled, Expired: u.Expired(s.svc.Now()),
		SessionsLimit: u.Limit(), CanUpdatePassword: u.CanUpdatePassword,
	}
}

func (s *server) listUsers(c *gin.Context) {
	page := queryInt(c, "page", 1, 1, 1<<20)
	perPage := queryInt(c, "per_page", defaultPerPage, 1, maxPerPage)
	users, total, err := s.svc.SearchUsers(c.Request.Context(), c.Query("search"), page, perPage)
	if err != nil {
		s.laravelError(c, err)
		return
	}
	data := make([]managedUser, len(users))
	for i, u := range users {
		data[i] = s.managed(u)
	}
	lastPage := max(1, (total+perPage-1)/perPage)
	from, to := (page-1)*perPage+1, (page-1)*perPage+len(users)
	if len(users) == 0 {
		from, to = 0, 0
	}
	// Laravel's paginator fields, so the product's admin clients can page.
	c.JSON(http.StatusOK, gin.H{
		"data": data, "current_page": page, "per_page": perPage,
		"total": total, "last_page": lastPage, "from": from, "to": to,
	})
}

// queryInt reads a positive query parameter, clamped to [lo, hi]; junk
// falls back to def rather than failing a list request.
func queryInt(c *gin.Context, name string, def, lo, hi int) int {
	n, err := strconv.Atoi(c.Query(name))
	if err != nil {
		return def
	}
	return min(max(n, lo), hi)
}

func (s *server) showUser(c *gin.Context) { c.JSON(http.StatusOK, s.managed(target(c))) }

// userBody reads the JSON object of a create or patch request; a body
// that is not one counts as empty, as on the login endpoints.
func (s *server) userBody(c *gin.Context) (userFields, bool) {
	fields, ok := s.loginFields(c)
	return userFields{c: c, m: fields, errs: fieldErrors{}}, ok
}

func (s *server) createUser(c *gin.Context) {
	f, ok := s.userBody(c)
	if !ok {
		return
	}
	n := auth.NewUser{
		Login:    requiredString(c, f.errs, f.m, "login"),
		Password: requiredString(c, f.errs, f.m, "password"),
		APIs:     []auth.API{auth.APIClient},
	}
	if v := f.str("name"); v != nil {
		n.Name = *v
	}
	if v := f.apis(); v != nil {
		n.APIs = *v
	}
	if v := f.strings("permissions"); v != nil {
		n.Permissions = *v
	}
	if v := f.int("sessions_limit"); v != nil {
		n.SessionsLimit = *v
	}
	if v := f.int("ptz_priority"); v != nil {
		n.PTZPriority = *v
	}
	if v := f.date("expired_at"); v != nil {
		n.ExpiredAt = *v
	}
	if v := f.bool("can_update_password"); v != nil {
		n.CannotUpdatePassword = !*v
	}
	if v := f.cameraGroups(); v != nil {
		n.CameraGroups = *v
	}
	if v := f.subnetGroups(); v != nil {
		n.SubnetGroups = *v
	}
	if len(f.errs) > 0 {
		invalid(c, f.errs)
		return
	}
	_, actor := current(c)
	u, err := s.svc.CreateUser(c.Request.Context(), auth.ActorOf(actor), n)
	if err != nil {
		s.laravelError(c, err)
		return
	}
	s.log.Info("user created", "login", u.Login, "by", actor.Login)
	c.JSON(http.StatusCreated, s.managed(u))
}

func (s *server) patchUser(c *gin.Context) {
	f, ok := s.userBody(c)
	if !ok {
		return
	}
	p := auth.UserPatch{
		Name: f.str("name"), APIs: f.apis(), Permissions: f.strings("permissions"),
		SessionsLimit: f.int("sessions_limit"), PTZPriority: f.int("ptz_priority"),
		ExpiredAt: f.date("expired_at"), Disabled: f.bool("disabled"),
		CanUpdatePassword: f.bool("can_update_password"),
		CameraGroups:      f.cameraGroups(), SubnetGroups: f.subnetGroups(),
	}
	if len(f.errs) > 0 {
		invalid(c, f.errs)
		return
	}
	_, actor := current(c)
	u, err := s.svc.UpdateUser(c.Request.Context(), auth.ActorOf(actor), target(c).ID, p)
	if err != nil {
		s.laravelError(c, err)
		return
	}
	s.log.Info("user updated", "login", u.Login, "by", actor.Login)
	c.JSON(http.StatusOK, s.managed(u))
}

func (s *server) deleteUser(c *gin.Context) {
	_, actor := current(c)
	u := target(c)
	if err := s.svc.DeleteUser(c.Request.Context(), auth.ActorOf(actor), u.ID); err != nil {
		s.laravelError(c, err)
		return
	}
	s.log.Info("user deleted", "login", u.Login, "by", actor.Login)
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

func (s *server) setPassword(c *gin.Context) {
	f, ok := s.userBody(c)
	if !ok {
		return
	}
	password := requiredString(c, f.errs, f.m, "password")
	if len(f.errs) > 0 {
		invalid(c, f.errs)
		return
	}
	_, actor := current(c)
	u, err := s.svc.SetPassword(c.Request.Context(), auth.ActorOf(actor), target(c).ID, password)
	if err != nil {
		s.laravelError(c, err)
		return
	}
	s.log.Info("password set; sessions ended", "login", u.Login, "by", actor.Login)
	c.JSON(http.StatusOK, s.managed(u))
}

// adminSession is a session as the admin page lists it: any API.
type adminSession struct {
	sessionJSON
	API       auth.API `json:"api"`
	CreatedAt string   `json:"created_at"`
	ExpiresAt string   `json:"expires_at"`
}

func (s *server) userSessions(c *gin.Context) {
	sess, actor := current(c)
	list, err := s.svc.UserSessions(c.Request.Context(), auth.ActorOf(actor), target(c).ID)
	if err != nil {
		s.laravelError(c, err)
		return
	}
	now := s.svc.Now()
	out := []adminSession{}
	for i, j := range s.sessionList(list, sess.ID) {
		if !list[i].Live(now) {
			continue
		}
		out = append(out, adminSession{sessionJSON: j, API: list[i].API,
			CreatedAt: formatTime(list[i].CreatedAt), ExpiresAt: formatTime(list[i].ExpiresAt)})
	}
	c.JSON(http.StatusOK, out)
}

func (s *server) endSession(c *gin.Context) {
	_, actor := current(c)
	if err := s.svc.EndSession(c.Request.Context(), auth.ActorOf(actor), c.Param("id")); err != nil {
		s.laravelError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

func (s *server) permissions(c *gin.Context) { c.JSON(http.StatusOK, auth.Catalog) }

// auditTrail lists login attempts, newest first: ?login= (any case),
// ?since= ("YYYY-MM-DD HH:MM:SS" or a date, box time), ?limit= (default
// 100, at most 1000).
func (s *server) auditTrail(c *gin.Context) {
	if s.audit == nil {
		c.JSON(http.StatusOK, []auth.AuditEntry{})
		return
	}
	f := auth.AuditFilter{Login: c.Query("login"), Limit: queryInt(c, "limit", 100, 1, 1000)}
	if v := c.Query("since"); v != "" {
		t, err := ParseTime(v)
		if err != nil {
			invalid(c, fieldErrors{"since": {FieldMessage(lang(c), auth.FieldError{Field: "since", Code: "date"})}})
			return
		}
		f.Since = t
	}
	entries, err := s.audit.Query(c.Request.Context(), f)
	if err != nil {
		s.laravelError(c, err)
		return
	}
	type row struct {
		Time   string   `json:"time"`
		IP     string   `json:"ip"`
		Login  string   `json:"login"`
		API    auth.API `json:"api"`
		Result string   `json:"result"`
		Reason string   `json:"reason"`
	}
	out := make([]row, len(entries))
	for i, e := range entries {
		out[i] = row{formatTime(e.Time), e.IP, e.Login, e.API, e.Result, e.Reason}
	}
	c.JSON(http.StatusOK, out)
}

// ParseTime reads the APIs' time format, "YYYY-MM-DD HH:MM:SS", or a bare
// date meaning its start, in the box's time zone.
func ParseTime(v string) (time.Time, error) {
	t, err := time.ParseInLocation(time.DateTime, v, time.Local)
	if err != nil {
		t, err = time.ParseInLocation(time.DateOnly, v, time.Local)
	}
	return t, err
}

// userFields reads optional typed fields of a user body, recording type
// errors in errs. Each getter returns nil for an absent field.
type userFields struct {
	c    *gin.Context
	m    map[string]json.RawMessage
	errs fieldErrors
}

// decode reads field name into dst; rule names the type for the error.
func (f userFields) decode(name, rule string, dst any) bool {
	raw, ok := f.m[name]
	if !ok {
		return false
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		f.errs.add(f.c, name, rule, "")
		return false
	}
	return true
}

// value reads an optional scalar field; JSON null counts as absent.
func value[T any](f userFields, name, rule string) *T {
	var v *T
	if !f.decode(name, rule, &v) {
		return nil
	}
	return v
}

// list reads an optional array field; JSON null is an empty list.
func list[T any](f userFields, name string) *[]T {
	var v []T
	if !f.decode(name, "array", &v) {
		return nil
	}
	if v == nil {
		v = []T{}
	}
	return &v
}

func (f userFields) str(name string) *string { return value[string](f, name, "string") }
func (f userFields) int(name string) *int    { return value[int](f, name, "integer") }
func (f userFields) bool(name string) *bool  { return value[bool](f, name, "boolean") }

func (f userFields) strings(name string) *[]string { return list[string](f, name) }

func (f userFields) apis() *[]auth.API {
	names := f.strings("apis")
	if names == nil {
		return nil
	}
	out := make([]auth.API, len(*names))
	for i, n := range *names {
		out[i] = auth.API(n)
	}
	return &out
}

// date reads "YYYY-MM-DD HH:MM:SS" (or just the date, meaning its start)
// in the box's time zone; JSON null clears the date.
func (f userFields) date(name string) **time.Time {
	var v *string
	if !f.decode(name, "date", &v) {
		return nil
	}
	var t *time.Time
	if v != nil && *v != "" {
		parsed, err := ParseTime(*v)
		if err != nil {
			f.errs.add(f.c, name, "date", "")
			return nil
		}
		t = &parsed
	}
	return &t
}

func (f userFields) cameraGroups() *[]auth.CameraGroup {
	return list[auth.CameraGroup](f, "admin_camera_groups")
}

func (f userFields) subnetGroups() *[]auth.SubnetGroup {
	return list[auth.SubnetGroup](f, "dhcp_subnet_groups")
}
