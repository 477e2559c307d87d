package store

import (
	"bytes"
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"vmsauth/auth"
)

// CreateSession stores s after the checks in opt; see auth.Store. It also
// returns ErrUserNotFound if s.UserID names no user, so a session can never
// outlive a concurrently deleted user.
func (db *DB) CreateSession(_ context.Context, s *auth.Session, opt auth.CreateOptions) error {
	// Logins that arrive together share one commit, and so one fsync,
	// rather than queueing for one each: batch runs their transactions as
	// one. It may run the function twice (when another function of the
	// group fails, the group rolls back and runs again without it, and the
	// failed one runs alone), which createSession allows: all it does is in
	// tx, and each run sees what the batch wrote before it, as if that had
	// committed first.
	var ended []auth.TokenHash
	err := db.batch(func(tx *bolt.Tx) error {
		ended = ended[:0]
		return createSession(tx, s, opt, db.touches, &ended)
	})
	db.sessions.forget(ended...)
	return err
}

// createSession is CreateSession's transaction. It changes nothing but tx
// and ended, where it adds the sessions it deletes, so that running it again
// after a rollback is safe. Activity not yet written counts (see touches).
func createSession(tx *bolt.Tx, s *auth.Session, opt auth.CreateOptions, pending *touches, ended *[]auth.TokenHash) error {
	// Every check and write is in this one transaction, and bbolt runs one
	// writer at a time: concurrent logins cannot both take the last place,
	// and a password change or a disabling that commits while a login
	// verifies the password is seen by opt.Check.
	u, err := user(tx, s.UserID)
	if err != nil {
		return err
	}
	if opt.Check != nil {
		if err := opt.Check(u); err != nil {
			return err
		}
	}
	if opt.Replace != "" {
		old, err := session(tx, opt.Replace)
		if err != nil {
			return err
		}
		if err := auth.CheckReplace(old, s); err != nil {
			return err
		}
		if err := deleteSession(tx, old); err != nil {
			return err
		}
		*ended = append(*ended, old.TokenHash)
	}
	if opt.CountsSessions() {
		if err := checkLimit(tx, s, opt, pending, ended); err != nil {
			return err
		}
	}
	if err := putSession(tx, s); err != nil {
		return err
	}
	if r := opt.Refresh; r != nil {
		if r.UserID != s.UserID || r.Family != s.Family {
			return errors.New("store: refresh token and session differ in user or family")
		}
		return putRefresh(tx, r)
	}
	return nil
}

// checkLimit applies auth.LimitSessions to the user's sessions, activity
// not yet written included, and deletes the sessions it prunes. Its
// *SessionLimitError rolls the whole transaction back, including a
// replaced session's deletion.
func checkLimit(tx *bolt.Tx, s *auth.Session, opt auth.CreateOptions, pending *touches, ended *[]auth.TokenHash) error {
	sessions, err := userSessions(tx, s.UserID)
	if err != nil {
		return err
	}
	pending.ApplyInWrite(sessions...)
	prune, err := auth.LimitSessions(s, sessions, opt)
	if err != nil {
		return err
	}
	for _, old := range prune {
		if err := deleteSession(tx, old); err != nil {
			return err
		}
		*ended = append(*ended, old.TokenHash)
	}
	return nil
}

// SessionByHash returns the session whose token hashes to h, with its user
// and without its device description; see auth.Store. Sessions checked
// lately come from memory (see sessionCache); others cost one state record
// and the user, decoded only when it changed since a check last needed it.
// Activity not yet written is put on top (see touches).
func (db *DB) SessionByHash(ctx context.Context, h auth.TokenHash) (*auth.Session, *auth.User, error) {
	s, u, err := db.SessionByHashShared(ctx, h)
	if err != nil {
		return nil, nil, err
	}
	return s, cloneUser(u), nil
}

// SessionByHashShared is SessionByHash with the user shared rather than
// copied (see auth.SharedUserStore): the cached user is never changed, a
// write replaces it, so a token check that only reads the user skips the
// copy, which was a third of the bytes a check allocated.
func (db *DB) SessionByHashShared(_ context.Context, h auth.TokenHash) (*auth.Session, *auth.User, error) {
	for {
		gen := db.touches.Generation()
		s, u, err := db.storedSession(h)
		if err != nil {
			return nil, nil, err
		}
		if db.touches.Apply(gen, s) {
			return s, u, nil
		}
	}
}

// storedSession is SessionByHashShared without the waiting activity.
func (db *DB) storedSession(h auth.TokenHash) (s *auth.Session, u *auth.User, err error) {
	if s, u, ok := db.sessions.get(h); ok {
		return s, u, nil
	}
	gen := db.sessions.generation()
	var state []byte
	s = new(auth.Session)
	err = db.view(func(tx *bolt.Tx) error {
		if db.release.due() {
			_ = dropMapped(tx)
		}
		v, err := sessionState(tx, h, s)
		if err != nil {
			return err
		}
		state = bytes.Clone(v)
		u, err = db.users.get(tx, s.UserID)
		if errors.Is(err, auth.ErrUserNotFound) {
			return auth.ErrSessionNotFound
		}
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	db.sessions.fill(gen, h, state, s.ID, u)
	return s, u, nil
}

// Session returns a session by public id, or ErrSessionNotFound.
func (db *DB) Session(_ context.Context, id string) (s *auth.Session, err error) {
	for {
		gen := db.touches.Generation()
		err = db.view(func(tx *bolt.Tx) error {
			s, err = session(tx, id)
			return err
		})
		if err != nil || db.touches.Apply(gen, s) {
			return s, err
		}
	}
}

// UserSessions returns the user's sessions, live or not, oldest first.
func (db *DB) UserSessions(_ context.Context, userID int64) (sessions []*auth.Session, err error) {
	for {
		gen := db.touches.Generation()
		err = db.view(func(tx *bolt.Tx) error {
			sessions, err = userSessions(tx, userID)
			return err
		})
		if err != nil || db.touches.Apply(gen, sessions...) {
			return sessions, err
		}
	}
}

// DeleteSession ends what auth.SessionEnding names for the session with
// the public id: the session alone, or its whole refresh chain; see
// auth.Store. ErrSessionNotFound if there is none.
func (db *DB) DeleteSession(_ context.Context, id string) error {
	var (
		h     auth.TokenHash
		chain bool
	)
	err := db.update(func(tx *bolt.Tx) error {
		s, err := session(tx, id)
		if err != nil {
			return err
		}
		h = s.TokenHash
		e := auth.SessionEnding(s)
		if _, only := e.Only(); only {
			return deleteSession(tx, s)
		}
		chain = true
		return end(tx, s.UserID, e)
	})
	if chain {
		// The chain's other sessions are not listed here.
		db.sessions.reset()
	} else {
		db.sessions.forget(h)
	}
	return err
}

// Refresh returns the refresh token with hash h, or ErrTokenInvalid.
func (db *DB) Refresh(_ context.Context, h auth.TokenHash) (r *auth.Refresh, err error) {
	err = db.view(func(tx *bolt.Tx) error {
		r, err = refresh(tx, h)
		return err
	})
	return r, err
}

// RotateRefresh applies auth.RotateRefresh to the stored refresh token old:
// it marks old used and stores s and r in its place, with old's user and
// family, or ends old's family if it was used already; see auth.Store.
func (db *DB) RotateRefresh(_ context.Context, old auth.TokenHash, s *auth.Session, r *auth.Refresh) error {
	// A reuse ends a whole chain, whose sessions are not listed here.
	defer db.sessions.reset()
	reused := false
	err := db.update(func(tx *bolt.Tx) error {
		o, err := refresh(tx, old)
		if err != nil {
			return err
		}
		var e auth.Ending
		// A reuse's ending must commit, so the transaction succeeds and
		// the caller gets ErrRefreshReused afterwards.
		if e, reused = auth.RotateRefresh(o, s, r); reused {
			return end(tx, o.UserID, e)
		}
		if err := put(tx, bucketRefresh, old[:], o); err != nil {
			return err
		}
		if err := putSession(tx, s); err != nil {
			return err
		}
		return putRefresh(tx, r)
	})
	if err == nil && reused {
		err = auth.ErrRefreshReused
	}
	return err
}

// session returns a whole session by public id.
func session(tx *bolt.Tx, id string) (*auth.Session, error) {
	key, err := hex.DecodeString(id)
	if err != nil {
		return nil, auth.ErrSessionNotFound
	}
	h := tx.Bucket(bucketSessionIDs).Get(key)
	if len(h) != len(auth.TokenHash{}) {
		return nil, auth.ErrSessionNotFound
	}
	return sessionByHash(tx, auth.TokenHash(h))
}

// sessionByHash returns a whole session: state and device.
func sessionByHash(tx *bolt.Tx, h auth.TokenHash) (*auth.Session, error) {
	s := new(auth.Session)
	if _, err := sessionState(tx, h, s); err != nil {
		return nil, err
	}
	if err := decodeDevice(tx.Bucket(bucketSessionDevice).Get(h[:]), &s.ClientMeta); err != nil {
		return nil, fmt.Errorf("decode session %s: %w", s.ID, err)
	}
	return s, nil
}

// sessionState fills s from the state record of h and returns the record,
// which is valid only inside tx; ErrSessionNotFound if there is none.
func sessionState(tx *bolt.Tx, h auth.TokenHash, s *auth.Session) ([]byte, error) {
	v := tx.Bucket(bucketSessionState).Get(h[:])
	if v == nil {
		return nil, auth.ErrSessionNotFound
	}
	if err := decodeState(h, v, s); err != nil {
		return nil, fmt.Errorf("decode session %s: %w", h.SessionID(), err)
	}
	return v, nil
}

// userSessions returns the user's sessions oldest first.
func userSessions(tx *bolt.Tx, userID int64) ([]*auth.Session, error) {
	var sessions []*auth.Session
	prefix := itob(userID)
	c := tx.Bucket(bucketUserSessions).Cursor()
	for k, _ := c.Seek(prefix); bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		if len(k) != len(prefix)+len(auth.TokenHash{}) {
			return nil, fmt.Errorf("malformed key %x in %s", k, bucketUserSessions)
		}
		s, err := sessionByHash(tx, auth.TokenHash(k[len(prefix):]))
		if err != nil {
			return nil, err
		}
		sessions = append(sessions, s)
	}
	slices.SortFunc(sessions, func(a, b *auth.Session) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	return sessions, nil
}

// putSession stores s: its state, its device, and the two index entries
// that find it by public id and by user.
func putSession(tx *bolt.Tx, s *auth.Session) error {
	id, err := hex.DecodeString(s.ID)
	if err != nil || s.ID != s.TokenHash.SessionID() {
		return errors.New("store: session id is not the one its token hash gives")
	}
	state, err := encodeState(s)
	if err != nil {
		return err
	}
	h := s.TokenHash[:]
	return errors.Join(
		tx.Bucket(bucketSessionState).Put(h, state),
		tx.Bucket(bucketSessionDevice).Put(h, encodeDevice(s.ClientMeta)),
		tx.Bucket(bucketSessionIDs).Put(id, h),
		tx.Bucket(bucketUserSessions).Put(userKey(s.UserID, h), nil),
	)
}

func deleteSession(tx *bolt.Tx, s *auth.Session) error {
	h := s.TokenHash[:]
	id, _ := hex.DecodeString(s.ID)
	return errors.Join(
		tx.Bucket(bucketSessionState).Delete(h),
		tx.Bucket(bucketSessionDevice).Delete(h),
		tx.Bucket(bucketSessionIDs).Delete(id),
		tx.Bucket(bucketUserSessions).Delete(userKey(s.UserID, h)),
	)
}

func refresh(tx *bolt.Tx, h auth.TokenHash) (*auth.Refresh, error) {
	r, err := get[auth.Refresh](tx, bucketRefresh, h[:])
	if err == nil && r == nil {
		err = auth.ErrTokenInvalid
	}
	return r, err
}

func putRefresh(tx *bolt.Tx, r *auth.Refresh) error {
	// An empty family would make a reuse end every familyless session of
	// the user, i.e. all their client and admin sessions.
	if r.Family == "" {
		return errors.New("store: refresh token without a family")
	}
	if err := put(tx, bucketRefresh, r.Hash[:], r); err != nil {
		return err
	}
	return tx.Bucket(bucketUserRefresh).Put(userKey(r.UserID, r.Hash[:]), nil)
}

// end deletes what e ends of the user's sessions and refresh tokens (see
// auth.Ending), and the user's refresh index entries whose token is gone.
func end(tx *bolt.Tx, userID int64, e auth.Ending) error {
	if e.IsZero() {
		return nil
	}
	sessions, err := userSessions(tx, userID)
	if err != nil {
		return err
	}
	for _, s := range sessions {
		if e.Ends(s) {
			if err := deleteSession(tx, s); err != nil {
				return err
			}
		}
	}
	if !e.EndsRefreshes() {
		return nil
	}

	// Collect first: deleting from a bucket while a cursor walks it skips
	// keys.
	var ended [][]byte
	prefix := itob(userID)
	c := tx.Bucket(bucketUserRefresh).Cursor()
	for k, _ := c.Seek(prefix); bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		r, err := get[auth.Refresh](tx, bucketRefresh, k[len(prefix):])
		if err != nil {
			return err
		}
		if r == nil || e.EndsRefresh(r) {
			ended = append(ended, bytes.Clone(k))
		}
	}
	for _, k := range ended {
		if err := tx.Bucket(bucketRefresh).Delete(k[len(prefix):]); err != nil {
			return err
		}
		if err := tx.Bucket(bucketUserRefresh).Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// userKey is an index key that groups entries by user.
func userKey(userID int64, suffix []byte) []byte { return append(itob(userID), suffix...) }
