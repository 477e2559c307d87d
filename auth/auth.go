// Package auth owns vmsauth's domain: users, permissions, sessions and tokens,
// the error kinds, the Store interface the rules need, and the rules themselves
// (password checks, session limits, token lifetimes). It knows nothing of HTTP
// or of bbolt: web maps requests onto it and store implements its Store.
package auth

import (
	"slices"
	"strings"
	"time"
)

// API names one of the three login APIs. A user lists the APIs it may use,
// and every session records the API that issued it.
type API string

const (
	APIClient      API = "client"
	APIAdmin       API = "admin"
	APIIntegration API = "integration"
)

// AllAPIs lists the APIs in a stable order.
var AllAPIs = []API{APIClient, APIAdmin, APIIntegration}

// ParseAPI returns the API named s (case-insensitive).
func ParseAPI(s string) (API, bool) {
	a := API(strings.ToLower(strings.TrimSpace(s)))
	return a, slices.Contains(AllAPIs, a)
}

// DefaultSessionsLimit is how many live client sessions a user may hold when
// the user record does not say otherwise (seed 000).
const DefaultSessionsLimit = 5

// CameraGroup is an admin camera group as the admin API reports it (seed 001).
// vmsauth keeps the assignment only; the VMS owns the cameras themselves.
type CameraGroup struct {
	ID             int64   `json:"id"`
	Name           string  `json:"name"`
	FullPretty     *string `json:"full_pretty"`
	IsHouse        int     `json:"is_house"`
	CamerasCount   int     `json:"cameras_count"`
	ParentID       *int64  `json:"parent_id"`
	CSAID          *int64  `json:"csa_id"`
	IntercomsCount int     `json:"intercoms_count"`
}

// SubnetGroup is a DHCP subnet group assigned to a user (seed 001 shows only
// an empty list, so the shape is the smallest useful one).
type SubnetGroup struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

// User is one account, shared by all three APIs.
type User struct {
	ID                int64         `json:"id"`
	Login             string        `json:"login"`
	Name              string        `json:"name"`
	PasswordHash      string        `json:"password_hash"`
	ParentID          *int64        `json:"parent_id,omitempty"`
	APIs              []API         `json:"apis"`
	Permissions       []string      `json:"permissions"`
	PTZPriority       int           `json:"ptz_priority"`
	CameraGroups      []CameraGroup `json:"camera_groups,omitempty"`
	SubnetGroups      []SubnetGroup `json:"subnet_groups,omitempty"`
	SessionsLimit     int           `json:"sessions_limit"`
	ExpiredAt         *time.Time    `json:"expired_at,omitempty"`
	Disabled          bool          `json:"disabled"`
	CanUpdatePassword bool          `json:"can_update_password"`
	CreatedAt         time.Time     `json:"created_at"`
	UpdatedAt         time.Time     `json:"updated_at"`
}

// Can reports whether the user may log in through api.
func (u *User) Can(api API) bool { return slices.Contains(u.APIs, api) }

// Has reports whether the user holds the named permission.
func (u *User) Has(permission string) bool { return slices.Contains(u.Permissions, permission) }

// Limit is the user's client session limit, with the default applied.
func (u *User) Limit() int {
	if u.SessionsLimit > 0 {
		return u.SessionsLimit
	}
	return DefaultSessionsLimit
}

// Expired reports whether the account's expiry date has passed at now.
func (u *User) Expired(now time.Time) bool {
	return u.ExpiredAt != nil && !now.Before(*u.ExpiredAt)
}

// usable returns the reason the account cannot log in at now, or nil.
func (u *User) usable(now time.Time) error {
	switch {
	case u.Disabled:
		return ErrAccountDisabled
	case u.Expired(now):
		return ErrAccountExpired
	}
	return nil
}

// TokenHash is the SHA-256 of a bearer or refresh token: the only form in
// which a token is ever stored.
type TokenHash [32]byte

// Session is one issued access token of any API. Its ID is public (the seed's
// access_token_id) and always TokenHash.SessionID(); the token itself is
// known only to the client.
type Session struct {
	ID        string    `json:"id"`
	TokenHash TokenHash `json:"token_hash"`
	UserID    int64     `json:"user_id"`
	API       API       `json:"api"`
	CreatedAt time.Time `json:"created_at"`
	LastSeen  time.Time `json:"last_seen"`
	ExpiresAt time.Time `json:"expires_at"`
	// Family ties integration tokens to the refresh chain that issued them,
	// so a reused refresh token can end the whole chain.
	Family string `json:"family,omitempty"`
	ClientMeta
}

// Live reports whether the session's token is still accepted at now.
func (s *Session) Live(now time.Time) bool { return now.Before(s.ExpiresAt) }

// ClientMeta describes the device behind a session, for the session list.
type ClientMeta struct {
	IP        string `json:"ip"`
	UserAgent string `json:"user_agent"`
	Client    string `json:"client"`
	Device    string `json:"device,omitempty"`
}

// Refresh is an integration refresh token. It works once: using it marks it
// Used, and presenting a used one again ends its whole Family.
type Refresh struct {
	Hash      TokenHash `json:"hash"`
	UserID    int64     `json:"user_id"`
	Family    string    `json:"family"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	Used      bool      `json:"used"`
}

// CreateOptions are the checks Store.CreateSession makes in the same
// transaction that writes the session.
type CreateOptions struct {
	// Now decides which existing sessions are still live.
	Now time.Time
	// Limit, when positive, is the most live sessions of the new session's
	// user and API that may exist; reaching it fails with *SessionLimitError.
	Limit int
	// Replace, when set, names a session of the same user and API that is
	// ended before the limit is counted.
	Replace string
	// Refresh, when set, is stored with the session (integration logins).
	Refresh *Refresh
	// Check, when set, is given the user as stored in the transaction
	// that writes the session; its error refuses the session. A login
	// uses it to make sure the password it verified is still the user's,
	// and that the account may still log in, whatever committed while it
	// hashed. It must not call the store.
	Check func(u *User) error
}

// Store keeps users, sessions and refresh tokens. Each method is one
// transaction; values returned are copies the caller owns.
type Store interface {
	// CreateUser assigns u.ID and stores u. ErrLoginTaken if another user has
	// the same login, compared case-insensitively.
	CreateUser(u *User) error
	// User returns the user with the id, or ErrUserNotFound.
	User(id int64) (*User, error)
	// UserByLogin finds a user by login, case-insensitively, or ErrUserNotFound.
	UserByLogin(login string) (*User, error)
	// Users returns every user ordered by id.
	Users() ([]*User, error)
	// CountUsers returns how many users exist.
	CountUsers() (int, error)
	// UpdateUser loads the user, lets fn change it and stores the result.
	// The user's sessions of the APIs fn returns are deleted in the same
	// transaction, and with the integration API its refresh tokens too.
	// ErrUserNotFound, ErrLoginTaken, or fn's error (then nothing is
	// written).
	UpdateUser(id int64, fn func(u *User) (end []API, err error)) (*User, error)
	// DeleteUser removes the user with its sessions and refresh tokens, or
	// returns ErrUserNotFound.
	DeleteUser(id int64) error

	// CreateSession stores s after the checks in opt, all in one
	// transaction. ErrUserNotFound if its user is gone; opt.Check's error;
	// ErrSessionNotFound if opt.Replace names no session of the same user
	// and API; *SessionLimitError if the limit is reached.
	CreateSession(s *Session, opt CreateOptions) error
	// SessionByHash returns the session whose token hashes to h, live or not,
	// with its user; ErrSessionNotFound if there is none. It is the token
	// check, so it may leave out of ClientMeta everything but IP.
	SessionByHash(h TokenHash) (*Session, *User, error)
	// Session returns a session by public id, or ErrSessionNotFound.
	Session(id string) (*Session, error)
	// UserSessions returns the user's sessions, live or not, oldest first.
	UserSessions(userID int64) ([]*Session, error)
	// DeleteSession ends a session by public id, or ErrSessionNotFound.
	// A session of a refresh chain ends with every session and refresh
	// token of its family.
	DeleteSession(id string) error
	// TouchSession records activity; a missing session is not an error, as it
	// may have been ended meanwhile. The store may write it shortly after it
	// returns, but every read of the session must see it at once.
	TouchSession(h TokenHash, lastSeen, expiresAt time.Time, ip string) error

	// Refresh returns the refresh token with hash h, or ErrTokenInvalid.
	Refresh(h TokenHash) (*Refresh, error)
	// RotateRefresh marks the refresh token old used and stores s and r in
	// its place, taking user and family from old. If old was already used,
	// it deletes every session and refresh token of its family instead and
	// returns ErrRefreshReused; ErrTokenInvalid if old does not exist.
	RotateRefresh(old TokenHash, s *Session, r *Refresh) error

	// Health is nil while the store can be trusted: it wraps
	// ErrStoreDamaged once a read or write found the file damaged,
	// ErrStoreWriteFailed while its last write failed, and
	// ErrStoreChecking until its start-up check has passed.
	Health() error
}
