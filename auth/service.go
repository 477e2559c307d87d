package auth

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"runtime"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Config holds the rules' tunables. Zero values take the defaults below.
type Config struct {
	BcryptCost     int           // cost of new hashes; default 10
	HashWorkers    int           // bcrypt runs at most this many at once; default GOMAXPROCS
	ClientIdle     time.Duration // a client session ends after this long unused; default 30 days
	AdminTTL       time.Duration // admin tokens live this long; default 12 h
	IntegrationTTL time.Duration // integration tokens live this long; default 24 h
	RefreshTTL     time.Duration // integration refresh tokens; default 30 days
	Licenses       []License     // the analytic license pool reported to clients

	Now  func() time.Time // injectable so tests move time without sleeping
	Rand io.Reader        // source of tokens and ids; default crypto/rand
}

// Defaults for Config.
const (
	DefaultClientIdle     = 30 * 24 * time.Hour
	DefaultAdminTTL       = 12 * time.Hour
	DefaultIntegrationTTL = 24 * time.Hour
	DefaultRefreshTTL     = 30 * 24 * time.Hour
)

// touchEvery bounds how often a session's activity is written to disk, so a
// busy client costs one write a minute rather than one per request.
const touchEvery = time.Minute

// Service applies vmsauth's rules on top of a Store.
type Service struct {
	store  Store
	cfg    Config
	hasher *hasher
}

// New returns a Service over store. It hashes a dummy password at the
// configured cost, so a bad cost fails here rather than at the first login.
func New(store Store, cfg Config) (*Service, error) {
	if cfg.BcryptCost == 0 {
		cfg.BcryptCost = bcrypt.DefaultCost
	}
	if cfg.HashWorkers <= 0 {
		cfg.HashWorkers = runtime.GOMAXPROCS(0)
	}
	setDefault(&cfg.ClientIdle, DefaultClientIdle)
	setDefault(&cfg.AdminTTL, DefaultAdminTTL)
	setDefault(&cfg.IntegrationTTL, DefaultIntegrationTTL)
	setDefault(&cfg.RefreshTTL, DefaultRefreshTTL)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	h, err := newHasher(cfg.BcryptCost, cfg.HashWorkers)
	if err != nil {
		return nil, err
	}
	return &Service{store: store, cfg: cfg, hasher: h}, nil
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// Now is the service's clock.
func (s *Service) Now() time.Time { return s.cfg.Now() }

// Licenses returns the analytic license pool.
func (s *Service) Licenses() []License { return s.cfg.Licenses }

// LicenceLimitReached reports whether some licensed pool has nothing free.
func (s *Service) LicenceLimitReached() bool {
	for _, l := range s.cfg.Licenses {
		if l.All > 0 && l.Free <= 0 {
			return true
		}
	}
	return false
}

// LoginRequest is a password login on one API.
type LoginRequest struct {
	API      API
	Login    string
	Password string
	// ReplaceSession is a client session of the same user to end first
	// (seed 000's session_id after a 419).
	ReplaceSession string
	Meta           ClientMeta
}

// Issued is the result of a login or a refresh: the new session and the
// secrets, which exist only here and in the answer to the client.
type Issued struct {
	User         *User
	Session      *Session
	Token        string
	RefreshToken string
}

// Login checks a password and opens a session. It returns
// ErrBadCredentials alike for an unknown login and a wrong password, and
// only after a right password ErrAccountDisabled, ErrAccountExpired or
// ErrNoAccess; on the client API also ErrSessionNotFound for an unknown
// ReplaceSession and *SessionLimitError.
func (s *Service) Login(ctx context.Context, req LoginRequest) (*Issued, error) {
	u, err := s.store.UserByLogin(req.Login)
	if err != nil && !errors.Is(err, ErrUserNotFound) {
		return nil, err
	}
	var hash string
	if u != nil {
		hash = u.PasswordHash
	}
	ok, err := s.hasher.verify(ctx, hash, req.Password)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrBadCredentials
	}
	// The clock is read after hashing, which may have queued.
	now := s.Now()
	if err := u.usable(now); err != nil {
		return nil, err
	}
	if !u.Can(req.API) {
		return nil, ErrNoAccess
	}

	out, err := s.newSession(u, req.API, now, req.Meta)
	if err != nil {
		return nil, err
	}
	opt := CreateOptions{Now: now}
	switch req.API {
	case APIClient:
		opt.Limit = u.Limit()
		opt.Replace = req.ReplaceSession
	case APIIntegration:
		family, err := newID(s.cfg.Rand, 16)
		if err != nil {
			return nil, err
		}
		out.Session.Family = family
		if opt.Refresh, out.RefreshToken, err = s.newRefresh(u.ID, family, now); err != nil {
			return nil, err
		}
	}
	if err := s.store.CreateSession(out.Session, opt); err != nil {
		return nil, err
	}
	return out, nil
}

// newSession makes a session of api for u with a fresh token.
func (s *Service) newSession(u *User, api API, now time.Time, meta ClientMeta) (*Issued, error) {
	tok, hash, err := newToken(s.cfg.Rand)
	if err != nil {
		return nil, err
	}
	sess := &Session{
		ID: hash.SessionID(), TokenHash: hash, UserID: u.ID, API: api,
		CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(s.ttl(api)),
		ClientMeta: meta,
	}
	return &Issued{User: u, Session: sess, Token: tok}, nil
}

func (s *Service) ttl(api API) time.Duration {
	switch api {
	case APIAdmin:
		return s.cfg.AdminTTL
	case APIIntegration:
		return s.cfg.IntegrationTTL
	}
	return s.cfg.ClientIdle
}

func (s *Service) newRefresh(userID int64, family string, now time.Time) (*Refresh, string, error) {
	tok, hash, err := newToken(s.cfg.Rand)
	if err != nil {
		return nil, "", err
	}
	r := &Refresh{Hash: hash, UserID: userID, Family: family, CreatedAt: now, ExpiresAt: now.Add(s.cfg.RefreshTTL)}
	return r, tok, nil
}

// Authenticate resolves a bearer token to its live session and user. api
// restricts which API's tokens count; "" accepts any. ip, when set, is
// recorded as the session's latest address. It returns ErrTokenMissing,
// ErrTokenInvalid (unknown, another API's, or its user can no longer log
// in) or ErrTokenExpired.
func (s *Service) Authenticate(token string, api API, ip string) (*Session, *User, error) {
	if token == "" {
		return nil, nil, ErrTokenMissing
	}
	sess, u, err := s.store.SessionByHash(HashToken(token))
	if errors.Is(err, ErrSessionNotFound) {
		return nil, nil, ErrTokenInvalid
	}
	if err != nil {
		return nil, nil, err
	}
	if api != "" && sess.API != api {
		return nil, nil, ErrTokenInvalid
	}
	now := s.Now()
	if !sess.Live(now) {
		return nil, nil, ErrTokenExpired
	}
	if u.usable(now) != nil || !u.Can(sess.API) {
		return nil, nil, ErrTokenInvalid
	}
	if now.Sub(sess.LastSeen) >= touchEvery || (ip != "" && ip != sess.IP) {
		sess.LastSeen = now
		if sess.API == APIClient {
			sess.ExpiresAt = now.Add(s.cfg.ClientIdle)
		}
		if ip != "" {
			sess.IP = ip
		}
		// A failed activity write must not fail a valid request: the token
		// is still good, and the next request tries again.
		_ = s.store.TouchSession(sess.TokenHash, sess.LastSeen, sess.ExpiresAt, sess.IP)
	}
	return sess, u, nil
}

// Logout ends the session.
func (s *Service) Logout(sess *Session) error {
	err := s.store.DeleteSession(sess.ID)
	if errors.Is(err, ErrSessionNotFound) {
		return nil
	}
	return err
}

// ClientSessions returns the user's live client sessions, oldest first.
func (s *Service) ClientSessions(userID int64) ([]*Session, error) {
	all, err := s.store.UserSessions(userID)
	if err != nil {
		return nil, err
	}
	now := s.Now()
	out := all[:0]
	for _, sess := range all {
		if sess.API == APIClient && sess.Live(now) {
			out = append(out, sess)
		}
	}
	return out, nil
}

// EndClientSession ends one of the user's client sessions, or returns
// ErrSessionNotFound if id is not one.
func (s *Service) EndClientSession(userID int64, id string) error {
	sess, err := s.store.Session(id)
	if err != nil {
		return err
	}
	if sess.UserID != userID || sess.API != APIClient {
		return ErrSessionNotFound
	}
	return s.store.DeleteSession(id)
}

// Refresh trades a single-use integration refresh token for a new token
// pair. It returns ErrTokenInvalid for an unknown token or one whose user
// can no longer log in, ErrTokenExpired, or ErrRefreshReused (after ending
// the token's whole chain) for a token used before.
func (s *Service) Refresh(refreshToken string, meta ClientMeta) (*Issued, error) {
	if refreshToken == "" {
		return nil, ErrTokenMissing
	}
	hash := HashToken(refreshToken)
	old, err := s.store.Refresh(hash)
	if err != nil {
		return nil, err
	}
	now := s.Now()
	var u *User
	if !old.Used {
		// A used token skips these checks: RotateRefresh must see it to end
		// the chain, whatever else is wrong with it.
		if !now.Before(old.ExpiresAt) {
			return nil, ErrTokenExpired
		}
		u, err = s.store.User(old.UserID)
		if errors.Is(err, ErrUserNotFound) {
			return nil, ErrTokenInvalid
		}
		if err != nil {
			return nil, err
		}
		if u.usable(now) != nil || !u.Can(APIIntegration) {
			return nil, ErrTokenInvalid
		}
	} else {
		u = &User{ID: old.UserID}
	}
	out, err := s.newSession(u, APIIntegration, now, meta)
	if err != nil {
		return nil, err
	}
	var r *Refresh
	if r, out.RefreshToken, err = s.newRefresh(u.ID, old.Family, now); err != nil {
		return nil, err
	}
	if err := s.store.RotateRefresh(hash, out.Session, r); err != nil {
		return nil, err
	}
	return out, nil
}

// Health reports whether the store answers and can be trusted to write
// (see Store.Health).
func (s *Service) Health() error {
	if err := s.store.Health(); err != nil {
		return err
	}
	_, err := s.store.CountUsers()
	return err
}
