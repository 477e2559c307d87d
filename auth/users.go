package auth

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Field bounds for user records.
const (
	maxLoginLen      = 255
	maxNameLen       = 255
	maxSessionsLimit = 1000
	maxPTZPriority   = 1000
)

// NewUser is what it takes to create an account. Exactly one of Password
// and PasswordHash is set: a hash imports an account from another system.
type NewUser struct {
	Login         string
	Name          string
	Password      string
	PasswordHash  string
	APIs          []API
	Permissions   []string
	SessionsLimit int
	PTZPriority   int
	ParentID      *int64
	ExpiredAt     *time.Time
	// CannotUpdatePassword is negative so the zero value lets users change
	// their own password, as the seed's can_update_password defaults.
	CannotUpdatePassword bool
	CameraGroups         []CameraGroup
	SubnetGroups         []SubnetGroup
}

// CreateUser validates n and stores a new user on behalf of actor. It
// returns ErrForbidden for permissions the actor does not hold, or
// *ValidationError (with "unique" on login for a taken one).
func (s *Service) CreateUser(ctx context.Context, actor Actor, n NewUser) (*User, error) {
	if err := actor.mayCreate(n); err != nil {
		return nil, err
	}
	var v ValidationError
	n.Login = checkNewLogin(&v, n.Login)
	if n.Name == "" {
		n.Name = n.Login
	}
	checkName(&v, n.Name)
	hash := n.PasswordHash
	if hash != "" {
		if n.Password != "" {
			v.Add("password", "prohibited", "")
		} else {
			checkImportedHash(&v, "password_hash", hash)
		}
	} else {
		checkPasswordRules(&v, "password", n.Password)
	}
	checkAPIs(&v, n.APIs)
	checkPermissions(&v, n.Permissions)
	checkRange(&v, "sessions_limit", n.SessionsLimit, 0, maxSessionsLimit)
	checkRange(&v, "ptz_priority", n.PTZPriority, 0, maxPTZPriority)
	if err := v.Err(); err != nil {
		return nil, err
	}
	// Outside the store's transaction, which still refuses an exact
	// duplicate: two admins creating look-alikes of each other at the same
	// moment is not a risk worth a second index.
	users, err := s.store.Users()
	if err != nil {
		return nil, err
	}
	if rule := loginTaken(n.Login, users); rule != "" {
		v.Add("login", rule, "")
		return nil, &v
	}
	if hash == "" {
		if hash, err = s.hasher.hash(ctx, n.Password); err != nil {
			return nil, err
		}
	}
	now := s.Now()
	u := &User{
		Login: n.Login, Name: n.Name, PasswordHash: hash,
		APIs: sortedAPIs(n.APIs), Permissions: sortedPermissions(n.Permissions),
		SessionsLimit: n.SessionsLimit, PTZPriority: n.PTZPriority,
		ParentID: n.ParentID, ExpiredAt: n.ExpiredAt,
		CanUpdatePassword: !n.CannotUpdatePassword,
		CameraGroups:      n.CameraGroups, SubnetGroups: n.SubnetGroups,
		CreatedAt: now, UpdatedAt: now,
	}
	if err := s.store.CreateUser(u); err != nil {
		if errors.Is(err, ErrLoginTaken) {
			v.Add("login", "unique", "")
			return nil, &v
		}
		return nil, err
	}
	return u, nil
}

// Bootstrap creates the first administrator, with every API and every
// permission, if the store holds no user at all. It reports whether it did.
func (s *Service) Bootstrap(ctx context.Context, login, password string) (bool, error) {
	n, err := s.store.CountUsers()
	if err != nil || n > 0 {
		return false, err
	}
	_, err = s.CreateUser(ctx, Root, NewUser{
		Login: login, Name: "Administrator", Password: password,
		APIs: AllAPIs, Permissions: AllPermissionNames(),
	})
	return err == nil, err
}

// User returns a user by id, or ErrUserNotFound.
func (s *Service) User(id int64) (*User, error) { return s.store.User(id) }

// UserByLogin returns a user by login, or ErrUserNotFound.
func (s *Service) UserByLogin(login string) (*User, error) { return s.findLogin(login) }

// Users returns every user, ordered by id.
func (s *Service) Users() ([]*User, error) { return s.store.Users() }

// SetPassword replaces a user's password on behalf of actor and ends all
// their sessions and tokens, so whoever knew the old one is locked out at
// once. ErrForbidden (ErrOwnPassword for the actor's own account),
// ErrUserNotFound or *ValidationError.
func (s *Service) SetPassword(ctx context.Context, actor Actor, id int64, password string) (*User, error) {
	if err := s.authorize(id, actor.maySetPassword); err != nil {
		return nil, err
	}
	var v ValidationError
	checkPasswordRules(&v, "password", password)
	if err := v.Err(); err != nil {
		return nil, err
	}
	hash, err := s.hasher.hash(ctx, password)
	if err != nil {
		return nil, err
	}
	return s.update(id, func(u *User) (bool, error) {
		if err := actor.maySetPassword(u); err != nil {
			return false, err
		}
		u.PasswordHash = hash
		u.UpdatedAt = s.Now()
		return true, nil
	})
}

// SetDisabled disables or enables an account on behalf of actor;
// disabling ends its sessions.
func (s *Service) SetDisabled(actor Actor, id int64, disabled bool) (*User, error) {
	return s.update(id, func(u *User) (bool, error) {
		if err := actor.mayUpdate(u, UserPatch{Disabled: &disabled}); err != nil {
			return false, err
		}
		u.Disabled = disabled
		u.UpdatedAt = s.Now()
		return disabled, nil
	})
}

// Grant adds catalog permissions to a user on behalf of actor.
func (s *Service) Grant(actor Actor, id int64, names []string) (*User, error) {
	var v ValidationError
	checkPermissions(&v, names)
	if err := v.Err(); err != nil {
		return nil, err
	}
	return s.update(id, func(u *User) (bool, error) {
		perms := sortedPermissions(append(slices.Clone(u.Permissions), names...))
		if err := actor.mayUpdate(u, UserPatch{Permissions: &perms}); err != nil {
			return false, err
		}
		u.Permissions = perms
		u.UpdatedAt = s.Now()
		return false, nil
	})
}

// Revoke removes permissions from a user on behalf of actor.
func (s *Service) Revoke(actor Actor, id int64, names []string) (*User, error) {
	return s.update(id, func(u *User) (bool, error) {
		perms := slices.DeleteFunc(slices.Clone(u.Permissions), func(p string) bool { return slices.Contains(names, p) })
		if err := actor.mayUpdate(u, UserPatch{Permissions: &perms}); err != nil {
			return false, err
		}
		u.Permissions = perms
		u.UpdatedAt = s.Now()
		return false, nil
	})
}

// DeleteUser removes a user with all their sessions and tokens, on behalf
// of actor, who may not delete themselves. ErrForbidden or ErrUserNotFound.
func (s *Service) DeleteUser(actor Actor, id int64) error {
	// The check and the delete are two transactions: only a concurrent
	// change by someone else (granting the target more) could slip
	// between them, which the actor cannot cause.
	if err := s.authorize(id, actor.mayDelete); err != nil {
		return err
	}
	return s.store.DeleteUser(id)
}

// authorize loads the user with id and applies check to them.
func (s *Service) authorize(id int64, check func(target *User) error) error {
	u, err := s.store.User(id)
	if err != nil {
		return err
	}
	return check(u)
}

func checkName(v *ValidationError, name string) {
	switch {
	case !utf8.ValidString(name):
		v.Add("name", "string", "")
	case utf8.RuneCountInString(name) > maxNameLen:
		v.Add("name", "max", strconv.Itoa(maxNameLen))
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		v.Add("name", "string", "")
	case strings.IndexFunc(name, bidiControl) >= 0:
		v.Add("name", "bidi", "")
	}
}

func checkAPIs(v *ValidationError, apis []API) {
	for _, a := range apis {
		if !slices.Contains(AllAPIs, a) {
			v.Add("apis", "in", "client, admin, integration")
			return
		}
	}
}

func checkPermissions(v *ValidationError, names []string) {
	for _, n := range names {
		if _, ok := LookupPermission(n); !ok {
			v.Add("permissions", "permission", n)
			return
		}
	}
}

func checkRange(v *ValidationError, field string, n, lo, hi int) {
	switch {
	case n < lo:
		v.Add(field, "min_value", strconv.Itoa(lo))
	case n > hi:
		v.Add(field, "max_value", strconv.Itoa(hi))
	}
}

// sortedAPIs returns apis deduplicated in AllAPIs order.
func sortedAPIs(apis []API) []API {
	out := []API{}
	for _, a := range AllAPIs {
		if slices.Contains(apis, a) {
			out = append(out, a)
		}
	}
	return out
}

// sortedPermissions returns names deduplicated in catalog order.
func sortedPermissions(names []string) []string {
	out := []string{}
	for _, p := range Catalog {
		if slices.Contains(names, p.Name) {
			out = append(out, p.Name)
		}
	}
	return out
}

// UserPatch changes some fields of a user; nil fields stay as they are.
type UserPatch struct {
	Name              *string
	APIs              *[]API
	Permissions       *[]string
	SessionsLimit     *int
	PTZPriority       *int
	ExpiredAt         **time.Time // set to a nil *time.Time to clear
	Disabled          *bool
	CanUpdatePassword *bool
	CameraGroups      *[]CameraGroup
	SubnetGroups      *[]SubnetGroup
}

// UpdateUser applies p to the user with id on behalf of actor (see
// Actor.mayUpdate: on their own account an admin changes only the name,
// so they can neither lock themselves out nor raise themselves).
// Disabling ends the user's sessions and tokens. It returns ErrForbidden,
// *ValidationError, ErrUserNotFound, or the stored user.
func (s *Service) UpdateUser(actor Actor, id int64, p UserPatch) (*User, error) {
	// Authorization comes before validation, as in Laravel: a caller who
	// may not make a change learns nothing about their input.
	if err := s.authorize(id, func(u *User) error { return actor.mayUpdate(u, p) }); err != nil {
		return nil, err
	}
	if err := validatePatch(p); err != nil {
		return nil, err
	}
	return s.update(id, func(u *User) (bool, error) {
		// Again in the transaction that writes, against the stored user.
		if err := actor.mayUpdate(u, p); err != nil {
			return false, err
		}
		return applyPatch(u, p, s.Now()), nil
	})
}

// validatePatch checks the fields p sets, as CreateUser checks a new
// user's: *ValidationError or nil.
func validatePatch(p UserPatch) error {
	var v ValidationError
	if p.Name != nil {
		if *p.Name == "" {
			v.Add("name", "required", "")
		}
		checkName(&v, *p.Name)
	}
	if p.APIs != nil {
		checkAPIs(&v, *p.APIs)
	}
	if p.Permissions != nil {
		checkPermissions(&v, *p.Permissions)
	}
	if p.SessionsLimit != nil {
		checkRange(&v, "sessions_limit", *p.SessionsLimit, 0, maxSessionsLimit)
	}
	if p.PTZPriority != nil {
		checkRange(&v, "ptz_priority", *p.PTZPriority, 0, maxPTZPriority)
	}
	return v.Err()
}

// applyPatch sets on u the fields p sets (p is valid) and stamps the
// change at now. It reports whether the patch disables an enabled user,
// whose sessions and tokens must then end.
func applyPatch(u *User, p UserPatch, now time.Time) (endSessions bool) {
	setIf(&u.Name, p.Name)
	if p.APIs != nil {
		u.APIs = sortedAPIs(*p.APIs)
	}
	if p.Permissions != nil {
		u.Permissions = sortedPermissions(*p.Permissions)
	}
	setIf(&u.SessionsLimit, p.SessionsLimit)
	setIf(&u.PTZPriority, p.PTZPriority)
	setIf(&u.ExpiredAt, p.ExpiredAt)
	setIf(&u.CanUpdatePassword, p.CanUpdatePassword)
	setIf(&u.CameraGroups, p.CameraGroups)
	setIf(&u.SubnetGroups, p.SubnetGroups)
	if p.Disabled != nil {
		endSessions = *p.Disabled && !u.Disabled
		u.Disabled = *p.Disabled
	}
	u.UpdatedAt = now
	return endSessions
}

// setIf sets *dst to *v when the patch gives v.
func setIf[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// UserSessions returns every session of a user, all APIs, live or not,
// if actor may see them: ErrForbidden, ErrUserNotFound.
func (s *Service) UserSessions(actor Actor, id int64) ([]*Session, error) {
	if err := s.authorize(id, actor.maySessions); err != nil {
		return nil, err
	}
	return s.store.UserSessions(id)
}

// EndSession ends any session by id on behalf of actor, who must be
// allowed to manage its user: ErrForbidden, ErrSessionNotFound.
func (s *Service) EndSession(actor Actor, id string) error {
	sess, err := s.store.Session(id)
	if err != nil {
		return err
	}
	if err := s.authorize(sess.UserID, actor.maySessions); errors.Is(err, ErrUserNotFound) {
		return ErrSessionNotFound
	} else if err != nil {
		return err
	}
	return s.store.DeleteSession(id)
}

// SearchUsers returns one page of users whose login or name contains
// search (case-insensitively), ordered by id, and the number of matches.
func (s *Service) SearchUsers(search string, page, perPage int) ([]*User, int, error) {
	all, err := s.store.Users()
	if err != nil {
		return nil, 0, err
	}
	if search != "" {
		q := strings.ToLower(search)
		all = slices.DeleteFunc(all, func(u *User) bool {
			return !strings.Contains(strings.ToLower(u.Login), q) && !strings.Contains(strings.ToLower(u.Name), q)
		})
	}
	total := len(all)
	start := min((page-1)*perPage, total)
	end := min(start+perPage, total)
	return all[start:end], total, nil
}
