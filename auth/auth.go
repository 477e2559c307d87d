// Package auth owns vmsauth's domain: users, permissions, sessions and tokens,
// the error kinds, the Store interface the rules need, and the rules themselves
// (password checks, session limits, token lifetimes). It knows nothing of HTTP
// or of bbolt: web maps requests onto it and store implements its Store.
package auth

import (
	"context"
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
	// Which sessions count is LimitSessions's rule.
	Limit int
	// Replace, when set, names a session of the same user and API that is
	// ended before the limit is counted (see CheckReplace).
	Replace string
	// Refresh, when set, is stored with the session (integration logins).
	Refresh *Refresh
	// Check, when set, is given the user as stored in the transaction
	// that writes the session; its error refuses the session. A login
	// uses it to make sure the password it verified is still the user's,
	// and that the account may still log in, whatever committed while it
	// hashed. It must not call the store, and may run more than once for
	// one call (a backend that batches or retries transactions runs it
	// again), so it only reads u.
	Check func(u *User) error
}

// Store keeps users, sessions and refresh tokens. It is the contract every
// storage backend keeps, and store/storetest holds the cases that prove it:
// a backend runs storetest.Run.
//
// Each method is one transaction: it happens whole or not at all, and
// values returned are copies the caller owns. Each takes a context first,
// which a backend that waits on a network or a lock gives up with when it
// ends (then it returns ctx's error and, for a write, either nothing or
// all of it happened: the caller cannot tell which, as with any lost
// answer). A local backend may finish what it started regardless.
//
// The rules a write applies inside its transaction are auth's, not the
// backend's: LimitSessions, CheckReplace, RotateRefresh and the Ending of
// each change (SessionEnding, UserEnding, UserDeletedEnding). A backend
// reads what they need, calls them and writes what they decide.
type Store interface {
	// CreateUser assigns u.ID and stores u. ErrLoginTaken if another user has
	// the same login, compared case-insensitively; nothing is written then.
	CreateUser(ctx context.Context, u *User) error
	// User returns the user with the id, or ErrUserNotFound.
	User(ctx context.Context, id int64) (*User, error)
	// UserByLogin finds a user by login, case-insensitively, or ErrUserNotFound.
	UserByLogin(ctx context.Context, login string) (*User, error)
	// Users returns every user ordered by id, from one consistent view.
	Users(ctx context.Context) ([]*User, error)
	// CountUsers returns how many users exist.
	CountUsers(ctx context.Context) (int, error)
	// UpdateUser loads the user, lets fn change it and stores the result,
	// atomically with ending what UserEnding(end) names of the user's
	// sessions and refresh tokens, end being the APIs fn returns.
	// ErrUserNotFound, ErrLoginTaken if fn gave the user another's login,
	// or fn's error; nothing is written on any error.
	//
	// fn may run more than once for one call: a backend that commits
	// optimistically runs it again, on the user as stored then, when
	// another write got in first. So fn decides from u alone, must not
	// call the store (a backend may hold its writer lock meanwhile), and
	// has no effect but on u and its results.
	UpdateUser(ctx context.Context, id int64, fn func(u *User) (end []API, err error)) (*User, error)
	// DeleteUser removes the user and, atomically, every session and
	// refresh token of theirs (UserDeletedEnding); ErrUserNotFound.
	DeleteUser(ctx context.Context, id int64) error

	// CreateSession stores s after the checks in opt, all in one
	// transaction: nothing is written if any fails. ErrUserNotFound if its
	// user is gone (a session never outlives its user); opt.Check's error;
	// ErrSessionNotFound if opt.Replace names no session of the same user
	// and API (CheckReplace); *SessionLimitError if the limit is reached
	// (LimitSessions, whose expired sessions it deletes on success).
	CreateSession(ctx context.Context, s *Session, opt CreateOptions) error
	// SessionByHash returns the session whose token hashes to h, live or not,
	// with its user; ErrSessionNotFound if there is none or its user is gone.
	// It is the token check, so it may leave out of ClientMeta everything
	// but IP. It sees every TouchSession that returned before it.
	SessionByHash(ctx context.Context, h TokenHash) (*Session, *User, error)
	// Session returns a session by public id, or ErrSessionNotFound.
	Session(ctx context.Context, id string) (*Session, error)
	// UserSessions returns the user's sessions, live or not, oldest first
	// (ties by id); none for an unknown user.
	UserSessions(ctx context.Context, userID int64) ([]*Session, error)
	// DeleteSession ends what SessionEnding names for the session with the
	// public id, atomically: the session alone, or, for a session of a
	// refresh chain, every session and refresh token of its family.
	// ErrSessionNotFound if there is no such session.
	DeleteSession(ctx context.Context, id string) error
	// TouchSession records activity; a missing session is not an error, as it
	// may have been ended meanwhile. The store may write it shortly after it
	// returns, but every read of the session must see it at once, and it
	// never brings back a session ended meanwhile.
	TouchSession(ctx context.Context, h TokenHash, lastSeen, expiresAt time.Time, ip string) error

	// Refresh returns the refresh token with hash h, or ErrTokenInvalid.
	Refresh(ctx context.Context, h TokenHash) (*Refresh, error)
	// RotateRefresh applies RotateRefresh (the function) to the stored
	// refresh token old, in one transaction: it marks old used and stores
	// s and r, with user and family from old; or, if old was already used,
	// it commits the end of old's whole family and then returns
	// ErrRefreshReused. ErrTokenInvalid if old does not exist.
	RotateRefresh(ctx context.Context, old TokenHash, s *Session, r *Refresh) error

	// Health is nil while the store can be trusted: it wraps
	// ErrStoreDamaged once a read or write found the data damaged,
	// ErrStoreWriteFailed while its last write failed, and
	// ErrStoreChecking until its start-up check has passed. It reports
	// what the backend knows and does not wait for a write.
	Health(ctx context.Context) error
}

// SharedUserStore is a Store that can answer a token check without copying
// the user. Service.Verify uses it when the store offers it: a check that
// only reads the user (forward auth, asked once per request the proxy
// protects) then allocates nothing for it.
type SharedUserStore interface {
	// SessionByHashShared is SessionByHash whose user may be shared with
	// the store and every other caller. The store never changes a user it
	// has handed out (a write replaces it), and the caller must not change
	// it either.
	SessionByHashShared(ctx context.Context, h TokenHash) (*Session, *User, error)
}
