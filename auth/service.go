package auth

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"sync"
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
	Logger         *slog.Logger  // faults found in the background; default slog.Default()

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

	// background counts rehashes still running (see Wait); rehashing
	// holds the ids of users being rehashed, so that parallel logins of
	// one user hash once; unverifiable holds the ids of users whose stored
	// hash was refused, so that each is logged once.
	background   sync.WaitGroup
	rehashing    sync.Map
	unverifiable sync.Map
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
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
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

// errHashChanged means the user's stored hash changed while a login
// verified the password against the one before.
var errHashChanged = errors.New("auth: password hash changed meanwhile")

// Login checks a password and opens a session. It returns
// ErrBadCredentials alike for an unknown login and a wrong password, and
// only after a right password ErrAccountDisabled, ErrAccountExpired or
// ErrNoAccess; on the client API also ErrSessionNotFound for an unknown
// ReplaceSession and *SessionLimitError.
//
// The session is written only if the hash the password was verified
// against is still the user's, in the same transaction: a login that
// verified the old password while a new one was set gets nothing. If the
// hash changed, the login verifies once more against the new one, which
// a rehash (see rehash) passes and a password change does not.
func (s *Service) Login(ctx context.Context, req LoginRequest) (*Issued, error) {
	out, err := s.login(ctx, req)
	if errors.Is(err, errHashChanged) {
		out, err = s.login(ctx, req)
	}
	if errors.Is(err, errHashChanged) {
		err = ErrBadCredentials
	}
	return out, err
}

func (s *Service) login(ctx context.Context, req LoginRequest) (*Issued, error) {
	u, err := s.findLogin(ctx, req.Login)
	if err != nil && !errors.Is(err, ErrUserNotFound) {
		return nil, err
	}
	var hash string
	if u != nil {
		hash = u.PasswordHash
	}
	ok, err := s.hasher.verify(ctx, hash, req.Password)
	if errors.Is(err, errUnverifiable) {
		s.refusedHash(u)
		return nil, ErrBadCredentials
	}
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
	opt := CreateOptions{Now: now, Check: func(cur *User) error {
		switch {
		case cur.PasswordHash != hash:
			return errHashChanged
		case cur.usable(now) != nil:
			return cur.usable(now)
		case !cur.Can(req.API):
			return ErrNoAccess
		}
		return nil
	}}
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
	if err := s.store.CreateSession(ctx, out.Session, opt); err != nil {
		return nil, err
	}
	if s.hasher.stale(hash) {
		s.rehash(u.ID, hash, req.Password)
	}
	return out, nil
}

// rehash replaces the user's hash, if it is still old, with one of pw at
// the configured cost, so that imported hashes and hashes from before a
// cost change converge. It runs after the login has answered; the
// replacement is a compare-and-set, so a password set meanwhile wins.
func (s *Service) rehash(id int64, old, pw string) {
	if _, busy := s.rehashing.LoadOrStore(id, true); busy {
		return
	}
	s.background.Add(1)
	go func() {
		defer s.background.Done()
		defer s.rehashing.Delete(id)
		hash, err := s.hasher.hash(context.Background(), pw)
		if err == nil {
			// A rehash belongs to no request: the login has answered.
			_, err = s.store.UpdateUser(context.Background(), id, func(u *User) ([]API, error) {
				if u.PasswordHash != old {
					return nil, errHashChanged
				}
				u.PasswordHash = hash
				return nil, nil
			})
		}
		if err != nil && !errors.Is(err, errHashChanged) && !errors.Is(err, ErrUserNotFound) {
			s.cfg.Logger.Error("rehashing a password at the configured cost", "user_id", id, "err", err)
		}
	}()
}

// refusedHash logs, once per user, a stored hash verify refuses to run:
// the user cannot log in until someone sets a new password.
func (s *Service) refusedHash(u *User) {
	if _, seen := s.unverifiable.LoadOrStore(u.ID, true); seen {
		return
	}
	cost, _ := bcrypt.Cost([]byte(u.PasswordHash))
	s.cfg.Logger.Error("stored password hash refused: not bcrypt, or its cost is above the highest verified; set a new password",
		"user_id", u.ID, "login", u.Login, "cost", cost, "max_cost", s.hasher.maxCost)
}

// Wait returns when the work logins left running in the background
// (rehashes) is done; call it before closing the store.
func (s *Service) Wait() { s.background.Wait() }

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
func (s *Service) Authenticate(ctx context.Context, token string, api API, ip string) (*Session, *User, error) {
	return s.authenticate(ctx, token, api, ip, s.store.SessionByHash)
}

// Verify is Authenticate for a check that only reads the user and records
// no address (forward auth): the user may be shared with the store (see
// SharedUserStore), so the caller must not change it.
func (s *Service) Verify(ctx context.Context, token string, api API) (*Session, *User, error) {
	lookup := s.store.SessionByHash
	if shared, ok := s.store.(SharedUserStore); ok {
		lookup = shared.SessionByHashShared
	}
	return s.authenticate(ctx, token, api, "", lookup)
}

func (s *Service) authenticate(ctx context.Context, token string, api API, ip string,
	lookup func(context.Context, TokenHash) (*Session, *User, error)) (*Session, *User, error) {
	if token == "" {
		return nil, nil, ErrTokenMissing
	}
	sess, u, err := lookup(ctx, HashToken(token))
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
		_ = s.store.TouchSession(ctx, sess.TokenHash, sess.LastSeen, sess.ExpiresAt, sess.IP)
	}
	return sess, u, nil
}

// Logout ends the session, and an integration session's whole refresh
// chain with it.
func (s *Service) Logout(ctx context.Context, sess *Session) error {
	err := s.store.DeleteSession(ctx, sess.ID)
	if errors.Is(err, ErrSessionNotFound) {
		return nil
	}
	return err
}

// ClientSessions returns the user's live client sessions, oldest first.
func (s *Service) ClientSessions(ctx context.Context, userID int64) ([]*Session, error) {
	all, err := s.store.UserSessions(ctx, userID)
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
func (s *Service) EndClientSession(ctx context.Context, userID int64, id string) error {
	sess, err := s.store.Session(ctx, id)
	if err != nil {
		return err
	}
	if sess.UserID != userID || sess.API != APIClient {
		return ErrSessionNotFound
	}
	return s.store.DeleteSession(ctx, id)
}

// Refresh trades a single-use integration refresh token for a new token
// pair. It returns ErrTokenInvalid for an unknown token or one whose user
// can no longer log in, ErrTokenExpired, or ErrRefreshReused (after ending
// the token's whole chain) for a token used before.
func (s *Service) Refresh(ctx context.Context, refreshToken string, meta ClientMeta) (*Issued, error) {
	if refreshToken == "" {
		return nil, ErrTokenMissing
	}
	hash := HashToken(refreshToken)
	old, err := s.store.Refresh(ctx, hash)
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
		u, err = s.store.User(ctx, old.UserID)
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
	if err := s.store.RotateRefresh(ctx, hash, out.Session, r); err != nil {
		return nil, err
	}
	return out, nil
}

// Health reports whether the store answers and can be trusted to write
// (see Store.Health).
func (s *Service) Health(ctx context.Context) error {
	if err := s.store.Health(ctx); err != nil {
		return err
	}
	_, err := s.store.CountUsers(ctx)
	return err
}
