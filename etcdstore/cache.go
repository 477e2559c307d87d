package etcdstore

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"vmsauth/auth"
	"vmsauth/etcd"
)

// The token-check cache. A token check is the one read every protected
// request makes; reading etcd for it (two linearizable reads, about 1.5 ms)
// would cost a box most of its throughput. So each box keeps the sessions
// that checks found lately, with their users, and follows the site with
// one watch on the whole prefix that applies every change to it:
//
//   - a session record written (a touch from any box) replaces the cached
//     copy; a session's record or index deleted (a logout, a limit's prune,
//     an ending, a sweep) forgets it;
//   - a user written or deleted (a password change, a disable, a new
//     permission, a deletion) forgets every cached session of theirs, so
//     the next check reads both again.
//
// A logout on box A thus reaches box B's checks as soon as B's watch
// delivers the deletion: about 2 ms on a loopback cluster.
//
// Fill race: a check that misses reads etcd at revision R and then caches
// what it read. The watch may meanwhile have applied a change after R (a
// logout) that the read did not see, and caching the read would bring the
// session back. So the cache keeps the revision the watch has applied (and
// the revision of this box's own last write, applied at once by txn), and
// a read older than either is served but not cached.
//
// While no watch is up (it broke, or etcd has no majority) nothing is known
// of changes, so checks bypass the cache and read etcd. Only when etcd does
// not answer either does a check fall back to the cached copy, and only for
// --etcd-stale-grace after the watch was lost: the trade-off between
// keeping camera viewers working through a short outage and honouring a
// logout made elsewhere during it. Past the grace, checks fail with
// auth.ErrUnavailable (503). A watch that resumes from the revision it
// stopped at replays what it missed and the cache stays; when that revision
// was compacted the cache is emptied and the watch starts afresh.

// DefaultStaleGrace is how long checks may answer from the cache after the
// watch was lost and etcd stopped answering (--etcd-stale-grace).
const DefaultStaleGrace = 60 * time.Second

// maxCachedSessions bounds the cache: more clients than a box serves at
// once, and about 2.5 MB at most (a session and a user each).
const maxCachedSessions = 4096

// watchRetry bounds the pause between two tries to open the watch.
const (
	watchRetryMin = 50 * time.Millisecond
	watchRetryMax = time.Second
)

// cached is one session with its user, as read at one revision. The user
// is shared with the callers of SessionByHashShared and never changed: an
// event replaces or forgets the entry.
type cached struct {
	sess   auth.Session
	u      *auth.User
	modRev int64 // the session record's mod revision
}

// sessionCache is the cache and the state of its watch.
type sessionCache struct {
	grace time.Duration
	max   int

	mu      sync.RWMutex
	m       map[auth.TokenHash]*cached
	up      bool
	applied int64 // the last revision the watch applied
	floor   int64 // this box's last write, applied at once
	since   time.Time
	err     string
	// unreachable: the last try to open the watch found no member
	// answering, so a check need not wait for its own read to fail before
	// answering from the cache within the grace.
	unreachable bool

	start  sync.Once
	cancel context.CancelFunc
	done   chan struct{}
}

func newSessionCache(grace time.Duration) *sessionCache {
	if grace < 0 {
		grace = 0
	}
	return &sessionCache{grace: grace, max: maxCachedSessions, m: map[auth.TokenHash]*cached{},
		since: time.Now(), err: "not started: no token check yet", done: make(chan struct{})}
}

// get returns a copy of the cached session of h and its shared user, while
// the watch is up.
func (c *sessionCache) get(h auth.TokenHash) (*auth.Session, *auth.User, bool) {
	c.mu.RLock()
	e, ok := c.m[h]
	if !ok || !c.up {
		c.mu.RUnlock()
		return nil, nil, false
	}
	s := new(auth.Session)
	*s = e.sess
	u := e.u
	c.mu.RUnlock()
	return s, u, true
}

// stale returns the cached session of h when the watch is down, the grace
// since it was lost has not passed, and etcd does not answer: failed says
// the caller's own read just failed so; otherwise the last try to open the
// watch must have found no member answering (a check then need not wait a
// request timeout to learn it).
func (c *sessionCache) stale(h auth.TokenHash, failed bool) (*auth.Session, *auth.User, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.up || !(failed || c.unreachable) || time.Since(c.since) >= c.grace {
		return nil, nil, false
	}
	e, ok := c.m[h]
	if !ok {
		return nil, nil, false
	}
	s := new(auth.Session)
	*s = e.sess
	return s, e.u, true
}

// fill caches what a check read at revision rev, unless the watch is down
// or has applied a later change the read may have missed.
func (c *sessionCache) fill(rev int64, s *auth.Session, modRev int64, u *auth.User) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.up || rev < c.applied || rev < c.floor {
		return
	}
	if len(c.m) >= c.max {
		for h := range c.m { // an arbitrary one: map order is random
			delete(c.m, h)
			break
		}
	}
	c.m[s.TokenHash] = &cached{sess: *s, u: u, modRev: modRev}
}

// forget drops h (a check found it gone).
func (c *sessionCache) forget(h auth.TokenHash) {
	c.mu.Lock()
	delete(c.m, h)
	c.mu.Unlock()
}

// reachable notes that etcd answered a read.
func (c *sessionCache) reachable() {
	c.mu.RLock()
	u := c.unreachable
	c.mu.RUnlock()
	if u {
		c.mu.Lock()
		c.unreachable = false
		c.mu.Unlock()
	}
}

// apply applies a batch of changes under prefix; watched says they come
// from the watch (which then has applied everything up to rev), not from
// this box's own write committed at rev.
func (c *sessionCache) apply(prefix string, events []etcd.Event, rev int64, watched bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range events {
		c.applyOne(prefix, &events[i])
	}
	if watched {
		c.applied = max(c.applied, rev)
	} else {
		c.floor = max(c.floor, rev)
	}
}

func (c *sessionCache) applyOne(prefix string, ev *etcd.Event) {
	k, ok := bytes.CutPrefix(ev.KV.Key, []byte(prefix))
	if !ok || len(c.m) == 0 {
		return
	}
	switch {
	case bytes.HasPrefix(k, []byte("s/")):
		// A session's index is written with it and deleted with it.
		var h auth.TokenHash
		if ev.Type == etcd.EventDelete && h.UnmarshalText(k[2:]) == nil {
			delete(c.m, h)
		}
	case bytes.HasPrefix(k, []byte("us/")):
		// us/<user id>/<hash>
		rest := k[3:]
		i := bytes.IndexByte(rest, '/')
		if i >= 0 && i == len(rest)-1 && ev.Type == etcd.EventDelete {
			// us/<user id>/: this box's range delete of all the user's
			// sessions (the watch sends one event per key instead).
			c.forgetUser(string(rest[:i]))
			return
		}
		var h auth.TokenHash
		if i < 0 || h.UnmarshalText(rest[i+1:]) != nil {
			return
		}
		e, ok := c.m[h]
		if !ok {
			return
		}
		if ev.Type == etcd.EventDelete {
			delete(c.m, h)
			return
		}
		if ev.KV.ModRevision <= e.modRev {
			return // what the cache holds is as new or newer
		}
		sess, err := decodeSession(&ev.KV)
		if err != nil || sess.TokenHash != h || sess.UserID != e.sess.UserID {
			delete(c.m, h)
			return
		}
		c.m[h] = &cached{sess: *sess, u: e.u, modRev: ev.KV.ModRevision}
	case bytes.HasPrefix(k, []byte("u/")):
		c.forgetUser(string(k[2:]))
	}
}

// forgetUser forgets every cached session of the user with the id (as
// written in keys). Rare (a user's change), and the cache is bounded: a
// scan is cheaper than an index kept on every fill.
func (c *sessionCache) forgetUser(key string) {
	id, err := strconv.ParseInt(key, 10, 64)
	if err != nil {
		return
	}
	for h, e := range c.m {
		if e.sess.UserID == id {
			delete(c.m, h)
		}
	}
}

// reset empties the cache: the watch must start afresh.
func (c *sessionCache) reset() {
	c.mu.Lock()
	clear(c.m)
	c.applied = 0
	c.mu.Unlock()
}

// setUp notes that a watch is open and has applied everything up to rev.
func (c *sessionCache) setUp(rev int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.applied = max(c.applied, rev)
	if !c.up {
		c.up, c.since = true, time.Now()
	}
	c.err, c.unreachable = "", false
}

// setDown notes that the watch is lost, and why.
func (c *sessionCache) setDown(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.up {
		c.up, c.since = false, time.Now()
	}
	c.err = err.Error()
	c.unreachable = errors.Is(err, etcd.ErrUnavailable) || errors.Is(err, etcd.ErrNoLeader) ||
		errors.Is(err, etcd.ErrTimeout)
}

func (c *sessionCache) state() WatchState {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return WatchState{Up: c.up, Revision: c.applied, Since: c.since, Cached: len(c.m), Error: c.err}
}

// startWatch starts the watch once, on the first token check: a store
// that never checks a token (a command, a test of writes) opens no stream.
func (s *Store) startWatch() {
	s.cache.start.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		s.cache.cancel = cancel
		go s.watchLoop(ctx)
	})
}

// stopWatch ends the watch and waits for it.
func (s *Store) stopWatch() {
	s.cache.start.Do(func() { close(s.cache.done) }) // never started
	if s.cache.cancel != nil {
		s.cache.cancel()
	}
	<-s.cache.done
}

// watchLoop keeps one watch open on the prefix until ctx ends. Each watch
// starts from now with an emptied cache (see follow), so after a break
// nothing the box missed can be answered from the cache: resuming from
// where the last stopped would leave the cache up, with its old entries,
// until etcd had replayed what happened meanwhile.
func (s *Store) watchLoop(ctx context.Context) {
	defer close(s.cache.done)
	// Only the records a check reads: users (u/), sessions (us/) and,
	// between them, refresh tokens (ur/). A whole-prefix watch would bring
	// every box every throttle counter, answered captcha and audit entry
	// of the site.
	key, end := s.key("u/"), etcd.PrefixEnd(s.key("us/"))
	pause := watchRetryMin
	for ctx.Err() == nil {
		w, err := s.c.Watch(ctx, etcd.WatchRequest{Key: key, RangeEnd: end, ProgressNotify: true})
		if err == nil {
			pause = watchRetryMin
			err = s.follow(ctx, w)
		}
		if ctx.Err() != nil {
			return
		}
		s.cache.setDown(err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, watchRetryMax)
	}
}

// follow applies w's changes until it ends.
func (s *Store) follow(ctx context.Context, w *etcd.Watcher) error {
	defer w.Close()
	stop := context.AfterFunc(ctx, w.Close)
	defer stop()
	// The watch starts now: what the cache held was kept only for the
	// stale grace, and changes missed since the last watch are not in it.
	s.cache.reset()
	s.cache.setUp(w.NextRevision() - 1)
	for {
		r, err := w.Next()
		if err != nil {
			return err
		}
		s.cache.apply(s.prefix, r.Events, w.NextRevision()-1, true)
	}
}

// applyLocal applies this box's own write, committed at rev, to the cache
// at once, as the watch will shortly: a check right after a logout on the
// same box must not find the session.
func (s *Store) applyLocal(ops []etcd.Op, rev int64) {
	var events []etcd.Event
	for _, op := range ops {
		switch {
		case op.Put != nil:
			events = append(events, etcd.Event{Type: etcd.EventPut,
				KV: etcd.KeyValue{Key: op.Put.Key, Value: op.Put.Value, ModRevision: rev}})
		case op.Delete != nil && op.Delete.RangeEnd != nil:
			// A range of a user's sessions (see end): as us/<user id>/,
			// which forgets all the user's.
			k := op.Delete.Key
			if i := bytes.LastIndexByte(k, '/'); i >= 0 {
				events = append(events, etcd.Event{Type: etcd.EventDelete,
					KV: etcd.KeyValue{Key: k[:i+1], ModRevision: rev}})
			}
		case op.Delete != nil:
			events = append(events, etcd.Event{Type: etcd.EventDelete,
				KV: etcd.KeyValue{Key: op.Delete.Key, ModRevision: rev}})
		}
	}
	if len(events) > 0 {
		s.cache.apply(s.prefix, events, rev, false)
	}
}
