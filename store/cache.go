package store

import (
	"sync"

	"vmsauth/auth"
)

// sessionCache keeps the sessions that token checks found lately, with
// their users, so that a busy client's checks skip the read transaction and
// the B-tree search. The store is the only writer of the file, so it can
// keep the cache true: every write that may change a cached session or user
// forgets it once committed (forget, reset).
//
// A check that misses reads the file and then fills the cache. A write can
// commit between the two, and the check would then put back what the write
// just forgot. So a check notes the generation before it reads, every
// forget starts a new one, and fill keeps nothing read in an older
// generation.
type sessionCache struct {
	mu  sync.RWMutex
	gen uint64
	m   map[auth.TokenHash]cachedSession
}

// cachedSession is a session's state record, as in the file (about 45
// bytes; decoding it costs far less than finding it), its public id (a
// SHA-512 and a hex encoding per check otherwise, for 96 bytes more an
// entry, under 0.4 MB when the cache is full), and its user, shared with the user cache: never
// changed, only replaced (see userCache.get), so SessionByHashShared may
// hand it out as it is.
type cachedSession struct {
	state []byte
	id    string
	u     *auth.User
}

// maxCachedSessions bounds the cache at well under 1 MB: more clients than
// a box serves at once, far fewer than it may hold sessions.
const maxCachedSessions = 4096

// get returns the cached session of h and its shared user, which the
// caller must not change (SessionByHash clones it).
func (c *sessionCache) get(h auth.TokenHash) (*auth.Session, *auth.User, bool) {
	c.mu.RLock()
	e, ok := c.m[h]
	c.mu.RUnlock()
	if !ok {
		return nil, nil, false
	}
	s := new(auth.Session)
	if decodeStateAs(h, e.id, e.state, s) != nil {
		return nil, nil, false // cannot be: it was decoded once already
	}
	return s, e.u, true
}

// generation is the generation a check must note before it reads the file.
func (c *sessionCache) generation() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.gen
}

// fill caches the session of h with its state record (which it keeps, so
// it must be a copy, not bbolt's memory), public id and user (which nobody
// may change),
// read from the file in generation gen, unless a write has been forgotten
// since.
func (c *sessionCache) fill(gen uint64, h auth.TokenHash, state []byte, id string, u *auth.User) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if c.m == nil {
		c.m = make(map[auth.TokenHash]cachedSession)
	}
	if len(c.m) >= maxCachedSessions {
		for h := range c.m { // an arbitrary one: map order is random
			delete(c.m, h)
			break
		}
	}
	c.m[h] = cachedSession{state: state, id: id, u: u}
}

// forget drops the sessions of hs after a write to them has committed.
func (c *sessionCache) forget(hs ...auth.TokenHash) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for _, h := range hs {
		delete(c.m, h)
	}
}

// reset drops everything after a write whose reach is wider than a few
// known sessions: a user's change, a chain's end, a sweep. Those are rare.
func (c *sessionCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.m)
}
