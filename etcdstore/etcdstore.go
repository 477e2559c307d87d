// Package etcdstore is the etcd storage backend: it implements auth.Store
// and auth.AuditLog on an etcd v3 cluster (through package etcd's JSON
// client), under a key prefix ("/vmsauth/" by default), so that the boxes of
// a site share users, sessions, refresh tokens and the audit trail. It owns
// the key layout and the transactions below; the rules are auth's
// (LimitSessions, CheckReplace, RotateRefresh, the Endings), applied as the
// bbolt store applies them, and store/storetest proves it keeps the same
// contract. It imports auth and etcd only.
//
// Keys, under the prefix (ids are 20-digit zero-padded decimals, so that a
// range lists them in order; hashes are hex):
//
//	n/users              last user id given (a counter)
//	u/<id>               a user, JSON
//	l/<lower-case login> the user id with that login
//	us/<id>/<hash>       a session of the user, JSON (the record itself)
//	s/<hash>             the session's user id (find a session by token)
//	i/<public id>        "<user id>/<hash>" (find a session by public id)
//	ur/<id>/<hash>       a refresh token of the user, JSON (the record)
//	r/<hash>             the refresh token's user id
//	n/audit              last audit sequence number given
//	a/<seq>              an audit entry, JSON; trimmed from the front only
//	init                 an unfinished site init (export.go)
//	t/, c/, g/, secret/  throttle counters, answered captchas, 419 graces
//	                     and the site's secrets (shared.go)
//
// A session and a refresh token live under their user, so the reads a
// write needs (the user's sessions for the limit or an ending) are one
// range, and the compare that guards the limit covers exactly them.
//
// Transactions: etcd has no interactive transactions, so every write reads
// what it needs, applies auth's rules to it, and commits one Txn whose
// compares hold only if nothing it read has changed since: the mod revision
// of each key read (or version 0 for a key that must be absent), and for a
// range (a user's sessions), that no key in it was written after the
// revision it was read at. When the compares fail another writer (another
// box) got there first: it reads again and retries, at most maxTries
// times. So each method happens whole or not at all, as in bbolt's single
// writer: 50 parallel logins of one user with a limit of 5 store exactly 5.
// UpdateUser's fn and CreateOptions.Check may run once per try, as the
// contract allows.
//
// Token checks are answered from a per-box cache that one watch on the
// prefix keeps true (cache.go); activity (TouchSession) is written behind,
// once a second, guarded by the session's mod revision so that it never
// brings back a session ended meanwhile (touch.go).
//
// Limits: etcd refuses a Txn with more than --max-txn-ops operations (128
// by default). AppendAudit writes in chunks of auditChunk entries, each its
// own Txn; an ending (a user deleted, a password changed) deletes three
// keys per session and two per refresh token in one Txn, or, for a user
// with too many for that, their records only, leaving the index keys to
// the sweep (see end).
package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"vmsauth/auth"
	"vmsauth/etcd"
)

// DefaultPrefix is where a site's keys live when no prefix is given.
const DefaultPrefix = "/vmsauth/"

// maxTries bounds the optimistic retries of one write. Under 50 parallel
// logins of one user a login took about 3 tries on average (LIBRARY-NOTES);
// the bound is far above that and still ends a livelock.
const maxTries = 100

// maxLost bounds the tries of one write whose answers were lost: each
// took a whole per-request timeout, and a caller must hear within seconds
// that etcd is not answering.
const maxLost = 2

// ErrContention is returned when a write lost to other writers maxTries
// times in a row.
// It is auth.ErrUnavailable too: the box cannot answer now, and the
// client may try again (503), as when etcd does not answer.
var ErrContention = fmt.Errorf("%w: etcdstore: too many concurrent writes to the same keys; try again", auth.ErrUnavailable)

var (
	_ auth.Store           = (*Store)(nil)
	_ auth.AuditLog        = (*Store)(nil)
	_ auth.SharedUserStore = (*Store)(nil)
)

// Store is auth.Store and auth.AuditLog on etcd. It is safe for
// concurrent use.
type Store struct {
	c      *etcd.Client
	prefix string
	closed atomic.Bool
	once   sync.Once

	cache   *sessionCache
	touches *touches

	mu       sync.Mutex
	writeErr error // the last write's failure, nil once one succeeds
}

// Open makes a client for cfg and a store under prefix (DefaultPrefix if
// empty; a trailing "/" is added). It does not connect: the first request
// does.
func Open(cfg etcd.Config, prefix string) (*Store, error) {
	c, err := etcd.New(cfg)
	if err != nil {
		return nil, err
	}
	return New(c, prefix), nil
}

// New is a store on the client c under prefix (see Open). Close closes c.
func New(c *etcd.Client, prefix string) *Store {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return &Store{c: c, prefix: prefix, cache: newSessionCache(DefaultStaleGrace), touches: newTouches()}
}

// SetStaleGrace sets how long token checks may answer from the cache once
// the watch is lost and etcd does not answer (DefaultStaleGrace unless
// set; 0: never). Call it before the first token check.
func (s *Store) SetStaleGrace(d time.Duration) {
	s.cache.mu.Lock()
	s.cache.grace = max(d, 0)
	s.cache.mu.Unlock()
}

// ErrClosed is what every call returns after Close.
var ErrClosed = errors.New("etcdstore: store is closed")

// Close writes the waiting touches, ends the watch and closes the client;
// it may be called more than once. Every call after it fails with
// ErrClosed, as the bbolt store's do once its file is closed.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() {
		err = s.closeTouches()
		s.closed.Store(true)
		s.stopWatch()
		s.c.Close()
	})
	return err
}

// rangeKV and txn are the only ways to etcd, so that none is taken after
// Close, and every outage is also auth.ErrUnavailable (see unavailable).
func (s *Store) rangeKV(ctx context.Context, r etcd.RangeRequest) (*etcd.RangeResponse, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	resp, err := s.c.Range(ctx, r)
	return resp, unavailable(err)
}

func (s *Store) txn(ctx context.Context, r etcd.TxnRequest) (*etcd.TxnResponse, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	resp, err := s.c.Txn(ctx, r)
	if err == nil && resp.Succeeded {
		s.applyLocal(r.Success, resp.Header.Revision)
	}
	return resp, unavailable(err)
}

// Health reports ErrStoreWriteFailed while the last write failed: etcd
// did not answer it, or refused it; and ErrClosed after Close.
func (s *Store) Health(context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writeErr != nil {
		return fmt.Errorf("%w: %v", auth.ErrStoreWriteFailed, s.writeErr)
	}
	return nil
}

func (s *Store) noteWrite(err error) {
	s.mu.Lock()
	s.writeErr = err
	s.mu.Unlock()
}

// Keys.

func (s *Store) key(parts ...string) []byte {
	return []byte(s.prefix + strings.Join(parts, ""))
}

func idKey(id int64) string { return fmt.Sprintf("%020d", id) }

func hashKey(h auth.TokenHash) string {
	b, _ := h.MarshalText()
	return string(b)
}

func loginKey(login string) string { return strings.ToLower(login) }

func (s *Store) userKey(id int64) []byte { return s.key("u/", idKey(id)) }
func (s *Store) loginKey(login string) []byte {
	return s.key("l/", loginKey(login))
}
func (s *Store) userSessionsKey(uid int64) []byte { return s.key("us/", idKey(uid), "/") }
func (s *Store) sessionKey(uid int64, h auth.TokenHash) []byte {
	return s.key("us/", idKey(uid), "/", hashKey(h))
}
func (s *Store) sessionHashKey(h auth.TokenHash) []byte { return s.key("s/", hashKey(h)) }
func (s *Store) sessionIDKey(id string) []byte          { return s.key("i/", id) }
func (s *Store) userRefreshKey(uid int64) []byte        { return s.key("ur/", idKey(uid), "/") }
func (s *Store) refreshKey(uid int64, h auth.TokenHash) []byte {
	return s.key("ur/", idKey(uid), "/", hashKey(h))
}
func (s *Store) refreshHashKey(h auth.TokenHash) []byte { return s.key("r/", hashKey(h)) }
func (s *Store) auditKey(seq int64) []byte              { return s.key("a/", idKey(seq)) }

// Transactions.

// write runs attempt until the Txn it builds commits: attempt reads what it
// needs and returns the guarded Txn, or nil for nothing (more) to write, or
// an error (a rule's) that ends the call with nothing written. A Txn whose
// compares fail is built again from fresh reads. A Txn etcd may have
// applied without answering is tried again too: every Txn here is guarded
// by compares on what it read, so it cannot apply twice; attempt is then
// called with maybe set, and first looks for its own earlier write (a
// session's key, say) so that it does not report as a failure what was in
// fact done (a user deleted twice is "not found").
func (s *Store) write(ctx context.Context, attempt func(maybe bool) (*etcd.TxnRequest, error)) (*etcd.TxnResponse, error) {
	maybe, lost := false, 0
	for try := 0; try < maxTries; try++ {
		if try > 0 {
			// Spread the retries of writers that collided.
			d := time.Duration(rand.Int64N(int64(time.Millisecond) * int64(min(try, 10))))
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(d):
			}
		}
		req, err := attempt(maybe)
		if err != nil || req == nil {
			// A write that failed on its reads failed too; a rule's
			// refusal says nothing of etcd.
			if e := (*etcd.Error)(nil); errors.As(err, &e) {
				s.noteWrite(err)
			}
			return nil, err
		}
		resp, err := s.txn(ctx, *req)
		if err != nil {
			if errors.Is(err, etcd.ErrMaybeApplied) && ctx.Err() == nil && lost < maxLost {
				maybe = true
				lost++
				continue
			}
			s.noteWrite(err)
			return nil, err
		}
		s.noteWrite(nil)
		if resp.Succeeded {
			return resp, nil
		}
	}
	return nil, ErrContention
}

// get reads one key at rev (0: now); kv is nil when it is absent.
func (s *Store) get(ctx context.Context, key []byte, rev int64) (*etcd.KeyValue, int64, error) {
	r, err := s.rangeKV(ctx, etcd.RangeRequest{Key: key, Revision: rev})
	if err != nil {
		return nil, 0, err
	}
	if len(r.KVs) == 0 {
		return nil, r.Header.Revision, nil
	}
	return &r.KVs[0], r.Header.Revision, nil
}

// list reads every key under prefix at rev (0: now).
func (s *Store) list(ctx context.Context, prefix []byte, rev int64) ([]etcd.KeyValue, int64, error) {
	r, err := s.rangeKV(ctx, etcd.RangeRequest{Key: prefix, RangeEnd: etcd.PrefixEnd(prefix), Revision: rev})
	if err != nil {
		return nil, 0, err
	}
	return r.KVs, r.Header.Revision, nil
}

func put(key, value []byte) etcd.Op {
	return etcd.Op{Put: &etcd.PutRequest{Key: key, Value: value}}
}

func del(key []byte) etcd.Op {
	return etcd.Op{Delete: &etcd.DeleteRangeRequest{Key: key}}
}

// delPrefix deletes every key under prefix.
func delPrefix(prefix []byte) etcd.Op {
	return etcd.Op{Delete: &etcd.DeleteRangeRequest{Key: prefix, RangeEnd: etcd.PrefixEnd(prefix)}}
}

// unchanged is the compare that kv (read at a revision) is still as read,
// or, for nil, that key is still absent.
func unchanged(key []byte, kv *etcd.KeyValue) etcd.Compare {
	if kv == nil {
		return etcd.CompareVersion(key, etcd.Equal, 0)
	}
	return etcd.CompareModRevision(key, etcd.Equal, kv.ModRevision)
}

// rangeUnchanged is the compare that no key under prefix was created or
// written after rev. A key deleted since is not seen; a deletion under a
// user's prefix only ever lowers what a write counts, and a write that
// must see its key still there compares that key too.
func rangeUnchanged(prefix []byte, rev int64) etcd.Compare {
	return etcd.CompareModRevision(prefix, etcd.Less, rev+1).WithPrefix()
}

func parseID(b []byte) (int64, error) {
	return strconv.ParseInt(string(b), 10, 64)
}
