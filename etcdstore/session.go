package etcdstore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"vmsauth/auth"
	"vmsauth/etcd"
)

// CreateSession stores sess after the checks in opt, in one Txn guarded by
// the user's revision, the replaced session's and, when a limit applies,
// the revision the user's sessions were counted at: two boxes cannot both
// take the last place. See auth.Store.
func (s *Store) CreateSession(ctx context.Context, sess *auth.Session, opt auth.CreateOptions) error {
	if sess.ID != sess.TokenHash.SessionID() {
		return errors.New("etcdstore: session id is not the one its token hash gives")
	}
	if r := opt.Refresh; r != nil && (r.UserID != sess.UserID || r.Family != sess.Family) {
		return errors.New("etcdstore: refresh token and session differ in user or family")
	}
	_, err := s.write(ctx, func(maybe bool) (*etcd.TxnRequest, error) {
		if maybe {
			// Token hashes are random: the key is the last try's.
			if kv, _, err := s.get(ctx, s.sessionHashKey(sess.TokenHash), 0); err != nil || kv != nil {
				return nil, err
			}
		}
		u, ukv, rev, sessions, err := s.userForSession(ctx, sess.UserID, opt.CountsSessions())
		if err != nil {
			return nil, err
		}
		if opt.Check != nil {
			if err := opt.Check(u); err != nil {
				return nil, err
			}
		}
		txn := &etcd.TxnRequest{Compare: []etcd.Compare{unchanged(ukv.Key, ukv)}}
		if opt.Replace != "" {
			old, okv, _, err := s.sessionByID(ctx, opt.Replace, rev)
			if err != nil {
				return nil, err
			}
			if err := auth.CheckReplace(old, sess); err != nil {
				return nil, err
			}
			txn.Compare = append(txn.Compare, unchanged(okv.Key, okv))
			txn.Success = append(txn.Success, s.deleteSession(old)...)
		}
		if opt.CountsSessions() {
			prune, err := auth.LimitSessions(sess, sessions, opt)
			if err != nil {
				return nil, err
			}
			txn.Compare = append(txn.Compare, rangeUnchanged(s.userSessionsKey(sess.UserID), rev))
			for _, old := range prune {
				txn.Success = append(txn.Success, s.deleteSession(old)...)
			}
		}
		ops, err := s.putSession(sess)
		if err != nil {
			return nil, err
		}
		txn.Success = append(txn.Success, ops...)
		if r := opt.Refresh; r != nil {
			ops, err := s.putRefresh(r)
			if err != nil {
				return nil, err
			}
			txn.Success = append(txn.Success, ops...)
		}
		return txn, nil
	})
	return err
}

// userForSession reads the user a session is created for and, with
// sessions, their sessions at the same revision (as userSessions), in one
// read-only Txn: a login's one round trip to etcd for both rather than two.
func (s *Store) userForSession(ctx context.Context, userID int64, sessions bool) (*auth.User, *etcd.KeyValue, int64, []*auth.Session, error) {
	if !sessions {
		u, kv, rev, err := s.user(ctx, userID, 0)
		return u, kv, rev, nil, err
	}
	if s.closed.Load() {
		return nil, nil, 0, nil, ErrClosed
	}
	gen := s.touches.Generation()
	prefix := s.userSessionsKey(userID)
	resp, err := s.c.Txn(ctx, etcd.TxnRequest{Success: []etcd.Op{
		{Range: &etcd.RangeRequest{Key: s.userKey(userID)}},
		{Range: &etcd.RangeRequest{Key: prefix, RangeEnd: etcd.PrefixEnd(prefix)}},
	}})
	if err != nil {
		return nil, nil, 0, nil, unavailable(err)
	}
	rev := resp.Header.Revision
	if len(resp.Responses) != 2 || resp.Responses[0].Range == nil || resp.Responses[1].Range == nil {
		return nil, nil, 0, nil, errors.New("etcdstore: a read of a user and their sessions answered no ranges")
	}
	ukvs := resp.Responses[0].Range.KVs
	if len(ukvs) == 0 {
		return nil, nil, rev, nil, auth.ErrUserNotFound
	}
	u, err := decodeUser(&ukvs[0])
	if err != nil {
		return nil, nil, 0, nil, err
	}
	kvs := resp.Responses[1].Range.KVs
	list := make([]*auth.Session, 0, len(kvs))
	for i := range kvs {
		sess, err := decodeSession(&kvs[i])
		if err != nil {
			return nil, nil, 0, nil, err
		}
		list = append(list, sess)
	}
	if !s.touches.Apply(gen, list...) {
		// A flush of touches was written since: read them again as
		// userSessions does.
		list, err = s.userSessions(ctx, userID, rev)
		if err != nil {
			return nil, nil, 0, nil, err
		}
		return u, &ukvs[0], rev, list, nil
	}
	slices.SortFunc(list, func(a, b *auth.Session) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	return u, &ukvs[0], rev, list, nil
}

// SessionByHash returns the session whose token hashes to h with its user,
// both at one revision; see auth.Store.
func (s *Store) SessionByHash(ctx context.Context, h auth.TokenHash) (*auth.Session, *auth.User, error) {
	sess, u, err := s.SessionByHashShared(ctx, h)
	if err != nil {
		return nil, nil, err
	}
	// The caller may change its user: a deep copy of the shared one,
	// through JSON as it is stored (SessionByHash is not the hot path:
	// Service.Verify uses SessionByHashShared).
	v, err := json.Marshal(u)
	if err != nil {
		return nil, nil, err
	}
	c := new(auth.User)
	if err := json.Unmarshal(v, c); err != nil {
		return nil, nil, err
	}
	return sess, c, nil
}

// SessionByHashShared is SessionByHash with the user shared with the
// cache (see auth.SharedUserStore): a cache hit allocates the session
// only. The waiting touch of the session is on it.
func (s *Store) SessionByHashShared(ctx context.Context, h auth.TokenHash) (*auth.Session, *auth.User, error) {
	if s.closed.Load() {
		return nil, nil, ErrClosed
	}
	s.startWatch()
	for {
		gen := s.touches.Generation()
		sess, u, err := s.storedSession(ctx, h)
		if err != nil {
			return nil, nil, err
		}
		if s.touches.Apply(gen, sess) {
			return sess, u, nil
		}
	}
}

// storedSession is the session of h as the site holds it: from the cache
// while the watch is up, else from etcd, else (etcd not answering) from the
// cache within the grace (see cache.go).
func (s *Store) storedSession(ctx context.Context, h auth.TokenHash) (*auth.Session, *auth.User, error) {
	if sess, u, ok := s.cache.get(h); ok {
		return sess, u, nil
	}
	if sess, u, ok := s.cache.stale(h, false); ok {
		return sess, u, nil
	}
	sess, u, modRev, rev, err := s.readSession(ctx, h)
	switch {
	case err == nil:
		s.cache.reachable()
		s.cache.fill(rev, sess, modRev, u)
		return sess, u, nil
	case errors.Is(err, auth.ErrSessionNotFound):
		s.cache.reachable()
		s.cache.forget(h)
	case errors.Is(err, auth.ErrUnavailable):
		if sess, u, ok := s.cache.stale(h, true); ok {
			return sess, u, nil
		}
	}
	return nil, nil, err
}

// readSession reads the session of h and its user from etcd at one
// revision, with the session record's mod revision and that revision.
func (s *Store) readSession(ctx context.Context, h auth.TokenHash) (*auth.Session, *auth.User, int64, int64, error) {
	kv, rev, err := s.get(ctx, s.sessionHashKey(h), 0)
	if err != nil {
		return nil, nil, 0, 0, err
	}
	if kv == nil {
		return nil, nil, 0, 0, auth.ErrSessionNotFound
	}
	uid, err := parseID(kv.Value)
	if err != nil {
		return nil, nil, 0, 0, fmt.Errorf("etcdstore: session index %s: %w", kv.Key, err)
	}
	// One read Txn: the session and its user as of one revision.
	r, err := s.txn(ctx, etcd.TxnRequest{Success: []etcd.Op{
		{Range: &etcd.RangeRequest{Key: s.sessionKey(uid, h), Revision: rev}},
		{Range: &etcd.RangeRequest{Key: s.userKey(uid), Revision: rev}},
	}})
	if err != nil {
		return nil, nil, 0, 0, err
	}
	if len(r.Responses) != 2 || r.Responses[0].Range == nil || r.Responses[1].Range == nil {
		return nil, nil, 0, 0, errors.New("etcdstore: malformed read answer")
	}
	skvs, ukvs := r.Responses[0].Range.KVs, r.Responses[1].Range.KVs
	if len(skvs) == 0 || len(ukvs) == 0 {
		return nil, nil, 0, 0, auth.ErrSessionNotFound
	}
	sess, err := decodeSession(&skvs[0])
	if err != nil {
		return nil, nil, 0, 0, err
	}
	u, err := decodeUser(&ukvs[0])
	if err != nil {
		return nil, nil, 0, 0, err
	}
	return sess, u, skvs[0].ModRevision, rev, nil
}

// Session returns a session by public id, or ErrSessionNotFound.
func (s *Store) Session(ctx context.Context, id string) (*auth.Session, error) {
	for {
		gen := s.touches.Generation()
		sess, _, _, err := s.sessionByID(ctx, id, 0)
		if err != nil {
			return nil, err
		}
		if s.touches.Apply(gen, sess) {
			return sess, nil
		}
	}
}

// sessionByID reads a session by public id at rev (0: now), with its
// record's key-value for a compare.
func (s *Store) sessionByID(ctx context.Context, id string, rev int64) (*auth.Session, *etcd.KeyValue, int64, error) {
	if id == "" || strings.ContainsAny(id, "/") {
		return nil, nil, 0, auth.ErrSessionNotFound
	}
	loc, rev, err := s.get(ctx, s.sessionIDKey(id), rev)
	if err != nil {
		return nil, nil, 0, err
	}
	if loc == nil {
		return nil, nil, 0, auth.ErrSessionNotFound
	}
	kv, _, err := s.get(ctx, s.key("us/", string(loc.Value)), rev)
	if err != nil {
		return nil, nil, 0, err
	}
	if kv == nil {
		return nil, nil, 0, auth.ErrSessionNotFound
	}
	sess, err := decodeSession(kv)
	return sess, kv, rev, err
}

// UserSessions returns the user's sessions, oldest first (ties by id).
func (s *Store) UserSessions(ctx context.Context, userID int64) ([]*auth.Session, error) {
	return s.userSessions(ctx, userID, 0)
}

// userSessions reads the user's sessions at rev (0: now), with this box's
// waiting touches on them: a limit counts a session as live as its last
// use made it.
func (s *Store) userSessions(ctx context.Context, userID int64, rev int64) ([]*auth.Session, error) {
	var sessions []*auth.Session
	for {
		gen := s.touches.Generation()
		kvs, _, err := s.list(ctx, s.userSessionsKey(userID), rev)
		if err != nil {
			return nil, err
		}
		sessions = make([]*auth.Session, 0, len(kvs))
		for i := range kvs {
			sess, err := decodeSession(&kvs[i])
			if err != nil {
				return nil, err
			}
			sessions = append(sessions, sess)
		}
		if s.touches.Apply(gen, sessions...) {
			break
		}
	}
	slices.SortFunc(sessions, func(a, b *auth.Session) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	return sessions, nil
}

// DeleteSession ends what auth.SessionEnding names for the session with
// the public id, in one Txn; see auth.Store.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	_, err := s.write(ctx, func(maybe bool) (*etcd.TxnRequest, error) {
		sess, kv, rev, err := s.sessionByID(ctx, id, 0)
		if maybe && errors.Is(err, auth.ErrSessionNotFound) {
			return nil, nil // the last try ended it
		}
		if err != nil {
			return nil, err
		}
		txn := &etcd.TxnRequest{Compare: []etcd.Compare{unchanged(kv.Key, kv)}}
		e := auth.SessionEnding(sess)
		if _, only := e.Only(); only {
			txn.Success = s.deleteSession(sess)
			return txn, nil
		}
		if err := s.end(ctx, txn, sess.UserID, rev, e); err != nil {
			return nil, err
		}
		return txn, nil
	})
	return err
}

// Refresh returns the refresh token with hash h, or ErrTokenInvalid.
func (s *Store) Refresh(ctx context.Context, h auth.TokenHash) (*auth.Refresh, error) {
	r, _, _, err := s.refresh(ctx, h)
	return r, err
}

// refresh reads the refresh token with hash h, with its record's
// key-value and the revision it was read at.
func (s *Store) refresh(ctx context.Context, h auth.TokenHash) (*auth.Refresh, *etcd.KeyValue, int64, error) {
	idx, rev, err := s.get(ctx, s.refreshHashKey(h), 0)
	if err != nil {
		return nil, nil, 0, err
	}
	if idx == nil {
		return nil, nil, 0, auth.ErrTokenInvalid
	}
	uid, err := parseID(idx.Value)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("etcdstore: refresh index %s: %w", idx.Key, err)
	}
	kv, _, err := s.get(ctx, s.refreshKey(uid, h), rev)
	if err != nil {
		return nil, nil, 0, err
	}
	if kv == nil {
		return nil, nil, 0, auth.ErrTokenInvalid
	}
	r := new(auth.Refresh)
	if err := json.Unmarshal(kv.Value, r); err != nil {
		return nil, nil, 0, fmt.Errorf("etcdstore: decode refresh token %s: %w", kv.Key, err)
	}
	return r, kv, rev, nil
}

// RotateRefresh applies auth.RotateRefresh to the stored token old in one
// Txn guarded by old's revision: two boxes presenting the same token at
// once cannot both spend it. See auth.Store.
func (s *Store) RotateRefresh(ctx context.Context, old auth.TokenHash, sess *auth.Session, r *auth.Refresh) error {
	reused := false
	_, err := s.write(ctx, func(maybe bool) (*etcd.TxnRequest, error) {
		if maybe && !reused {
			// The new token's hash is random: the key is the last try's.
			if kv, _, err := s.get(ctx, s.refreshHashKey(r.Hash), 0); err != nil || kv != nil {
				return nil, err
			}
		}
		o, kv, rev, err := s.refresh(ctx, old)
		if maybe && reused && errors.Is(err, auth.ErrTokenInvalid) {
			return nil, nil // the last try ended the chain
		}
		if err != nil {
			return nil, err
		}
		txn := &etcd.TxnRequest{Compare: []etcd.Compare{unchanged(kv.Key, kv)}}
		var e auth.Ending
		if e, reused = auth.RotateRefresh(o, sess, r); reused {
			// The end of the chain commits; the caller gets
			// ErrRefreshReused after it.
			if err := s.end(ctx, txn, o.UserID, rev, e); err != nil {
				return nil, err
			}
			return txn, nil
		}
		v, err := json.Marshal(o)
		if err != nil {
			return nil, err
		}
		txn.Success = append(txn.Success, put(kv.Key, v))
		if sess.ID != sess.TokenHash.SessionID() {
			return nil, errors.New("etcdstore: session id is not the one its token hash gives")
		}
		ops, err := s.putSession(sess)
		if err != nil {
			return nil, err
		}
		txn.Success = append(txn.Success, ops...)
		ops, err = s.putRefresh(r)
		if err != nil {
			return nil, err
		}
		txn.Success = append(txn.Success, ops...)
		return txn, nil
	})
	if err == nil && reused {
		err = auth.ErrRefreshReused
	}
	return err
}

// endBudget bounds the operations an ending puts in its Txn. etcd refuses
// a Txn of more than --max-txn-ops operations (128 by default) and the
// write around the ending adds a few of its own.
const endBudget = 110

// orphansKey marks that an ending left index keys behind (see end); the
// sweep then deletes them.
const orphansKey = "n/orphans"

// ErrTooManyToEnd is returned when ending a user's sessions would take
// more operations than one etcd Txn may hold, even without their indexes.
var ErrTooManyToEnd = errors.New("etcdstore: too many sessions to end in one etcd transaction; raise etcd's --max-txn-ops")

// end adds to txn the deletes of what e ends of the user's sessions and
// refresh tokens as of rev, and the compares that nothing was added to
// them since. The compares on the records read before rev, or on the
// user, are the caller's.
//
// A session is three keys (its record and two indexes) and a refresh token
// two; a user who holds many (an integration that logs in again and again)
// would pass etcd's cap on a Txn. Then only the records are deleted (all of
// a user's at once by one range delete, when all of them end), which ends
// the tokens at once, since every read goes from an index to its record
// and finds none; the index keys left behind are deleted by the next sweep
// (orphansKey).
func (s *Store) end(ctx context.Context, txn *etcd.TxnRequest, userID, rev int64, e auth.Ending) error {
	if e.IsZero() {
		return nil
	}
	sessions, err := s.userSessions(ctx, userID, rev)
	if err != nil {
		return err
	}
	txn.Compare = append(txn.Compare, rangeUnchanged(s.userSessionsKey(userID), rev))
	var ended []*auth.Session
	for _, sess := range sessions {
		if e.Ends(sess) {
			ended = append(ended, sess)
		}
	}
	var refreshes []*auth.Refresh
	allRefreshes := true
	if e.EndsRefreshes() {
		kvs, _, err := s.list(ctx, s.userRefreshKey(userID), rev)
		if err != nil {
			return err
		}
		txn.Compare = append(txn.Compare, rangeUnchanged(s.userRefreshKey(userID), rev))
		for i := range kvs {
			r, err := decodeRefresh(&kvs[i])
			if err != nil {
				return err
			}
			if e.EndsRefresh(r) {
				refreshes = append(refreshes, r)
			} else {
				allRefreshes = false
			}
		}
	}
	if len(txn.Success)+3*len(ended)+2*len(refreshes) <= endBudget {
		for _, sess := range ended {
			txn.Success = append(txn.Success, s.deleteSession(sess)...)
		}
		for _, r := range refreshes {
			txn.Success = append(txn.Success, del(s.refreshKey(userID, r.Hash)), del(s.refreshHashKey(r.Hash)))
		}
		return nil
	}
	switch kept := len(sessions) - len(ended); {
	case kept < len(ended):
		// Range deletes around the few that stay (sessions of an API
		// the user keeps): one more than those.
		var keep [][]byte
		for _, sess := range sessions {
			if !e.Ends(sess) {
				keep = append(keep, s.sessionKey(userID, sess.TokenHash))
			}
		}
		slices.SortFunc(keep, bytes.Compare)
		from := s.userSessionsKey(userID)
		for _, k := range append(keep, etcd.PrefixEnd(from)) {
			if bytes.Compare(from, k) < 0 {
				txn.Success = append(txn.Success, etcd.Op{Delete: &etcd.DeleteRangeRequest{Key: from, RangeEnd: k}})
			}
			from = append(k[:len(k):len(k)], 0) // just after k
		}
	default:
		for _, sess := range ended {
			txn.Success = append(txn.Success, del(s.sessionKey(userID, sess.TokenHash)))
		}
	}
	if len(refreshes) > 0 && allRefreshes {
		txn.Success = append(txn.Success, delPrefix(s.userRefreshKey(userID)))
	} else {
		for _, r := range refreshes {
			txn.Success = append(txn.Success, del(s.refreshKey(userID, r.Hash)))
		}
	}
	if len(txn.Success) >= endBudget {
		return fmt.Errorf("%w (user %d: %d sessions, %d refresh tokens)", ErrTooManyToEnd, userID, len(ended), len(refreshes))
	}
	txn.Success = append(txn.Success, put(s.key(orphansKey), []byte("1")))
	return nil
}

func decodeSession(kv *etcd.KeyValue) (*auth.Session, error) {
	sess := new(auth.Session)
	if err := json.Unmarshal(kv.Value, sess); err != nil {
		return nil, fmt.Errorf("etcdstore: decode session %s: %w", kv.Key, err)
	}
	return sess, nil
}

// putSession is the ops that store sess: its record and its two indexes.
func (s *Store) putSession(sess *auth.Session) ([]etcd.Op, error) {
	v, err := json.Marshal(sess)
	if err != nil {
		return nil, err
	}
	uid := idKey(sess.UserID)
	return []etcd.Op{
		put(s.sessionKey(sess.UserID, sess.TokenHash), v),
		put(s.sessionHashKey(sess.TokenHash), []byte(uid)),
		put(s.sessionIDKey(sess.ID), []byte(uid+"/"+hashKey(sess.TokenHash))),
	}, nil
}

func (s *Store) deleteSession(sess *auth.Session) []etcd.Op {
	return []etcd.Op{
		del(s.sessionKey(sess.UserID, sess.TokenHash)),
		del(s.sessionHashKey(sess.TokenHash)),
		del(s.sessionIDKey(sess.ID)),
	}
}

func (s *Store) putRefresh(r *auth.Refresh) ([]etcd.Op, error) {
	// An empty family would make a reuse end every familyless session of
	// the user, i.e. all their client and admin sessions.
	if r.Family == "" {
		return nil, errors.New("etcdstore: refresh token without a family")
	}
	v, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	return []etcd.Op{
		put(s.refreshKey(r.UserID, r.Hash), v),
		put(s.refreshHashKey(r.Hash), []byte(idKey(r.UserID))),
	}, nil
}
