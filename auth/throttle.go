package auth

import (
	"container/list"
	"strings"
	"sync"
	"time"
)

// Throttling defaults (seed 000): 10 token requests per client IP and 10
// failed attempts per login in any 10 minutes.
const (
	DefaultIPLimit     = 10
	DefaultLoginLimit  = 10
	DefaultWindow      = 10 * time.Minute
	DefaultMaxCounters = 10000
	// maxHits bounds the event times one Window may hold when its key
	// count is left to the default: with a high limit, fewer keys fit.
	maxHits = 200000
)

// Decision is the outcome of a throttled request, with what the client is
// told about its budget.
type Decision struct {
	Allowed   bool
	Limit     int
	Remaining int
	// Reset is when the oldest counted request leaves the window, so the
	// next one is allowed again (meaningful when !Allowed).
	Reset time.Time
}

// RetryAfter is how long a refused client must wait, rounded up to whole
// seconds as the Retry-After header wants them.
func (d Decision) RetryAfter(now time.Time) int {
	s := int((d.Reset.Sub(now) + time.Second - 1) / time.Second)
	return max(s, 1)
}

// Window counts events per key over a sliding window: a key may have at
// most limit events in any span of the window's length. It remembers only
// the last limit event times of each key and at most maxKeys keys,
// dropping the least recently used, so a flood of addresses cannot grow it
// without bound.
type Window struct {
	mu     sync.Mutex
	limit  int
	window time.Duration
	max    int
	now    func() time.Time
	keys   map[string]*list.Element
	lru    *list.List // of *counter, most recently used first
}

type counter struct {
	key  string
	hits []time.Time // oldest first, at most limit
}

// NewWindow returns an empty Window.
func NewWindow(limit int, window time.Duration, maxKeys int, now func() time.Time) *Window {
	return &Window{limit: limit, window: window, max: maxKeys, now: now, keys: map[string]*list.Element{}, lru: list.New()}
}

// Take counts one event for key if the key is under its limit, and says
// whether it was allowed. A refused event is not counted, so a lock lasts
// until the window frees and never longer.
func (w *Window) Take(key string) Decision {
	d, _ := w.take(key)
	return d
}

// take is Take that also returns the time the event was counted at.
func (w *Window) take(key string) (Decision, time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	d, c := w.peek(key, now)
	if d.Allowed {
		c = w.counter(key, c)
		c.hits = append(c.hits, now)
		d.Remaining--
	}
	return d, now
}

// Peek says whether key is under its limit without counting anything.
func (w *Window) Peek(key string) Decision {
	w.mu.Lock()
	defer w.mu.Unlock()
	d, _ := w.peek(key, w.now())
	return d
}

// Undo removes one event counted at t, if it is still there.
func (w *Window) Undo(key string, t time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	el, ok := w.keys[key]
	if !ok {
		return
	}
	c := el.Value.(*counter)
	for i, h := range c.hits {
		if h.Equal(t) {
			c.hits = append(c.hits[:i], c.hits[i+1:]...)
			break
		}
	}
	if len(c.hits) == 0 {
		w.lru.Remove(el)
		delete(w.keys, key)
	}
}

// Len returns how many keys are tracked.
func (w *Window) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.keys)
}

// peek drops key's events that left the window and judges the next one.
func (w *Window) peek(key string, now time.Time) (Decision, *counter) {
	d := Decision{Allowed: true, Limit: w.limit, Remaining: w.limit}
	el, ok := w.keys[key]
	if !ok {
		return d, nil
	}
	c := el.Value.(*counter)
	cut := 0
	for cut < len(c.hits) && !now.Before(c.hits[cut].Add(w.window)) {
		cut++
	}
	c.hits = c.hits[cut:]
	if len(c.hits) == 0 {
		w.lru.Remove(el)
		delete(w.keys, key)
		return d, nil
	}
	w.lru.MoveToFront(el)
	d.Remaining = w.limit - len(c.hits)
	if d.Remaining <= 0 {
		d.Allowed, d.Remaining = false, 0
		d.Reset = c.hits[len(c.hits)-w.limit].Add(w.window)
	}
	return d, c
}

// counter returns key's counter, making it (and evicting the least
// recently used key when full) if c is nil.
func (w *Window) counter(key string, c *counter) *counter {
	if c != nil {
		return c
	}
	if w.lru.Len() >= w.max {
		oldest := w.lru.Back()
		w.lru.Remove(oldest)
		delete(w.keys, oldest.Value.(*counter).key)
	}
	// Room grows with use: a high limit must not reserve it for every key.
	c = &counter{key: key, hits: make([]time.Time, 0, min(w.limit, 16))}
	w.keys[key] = w.lru.PushFront(c)
	return c
}

// ThrottleConfig tunes a Throttle; zero values take the defaults.
type ThrottleConfig struct {
	IPLimit     int
	LoginLimit  int
	Window      time.Duration
	MaxCounters int // per counter kind; default 10000, fewer for limits over 20
	Now         func() time.Time
}

// Throttle limits password logins on all three APIs together: requests per
// client IP (every request counts) and failed attempts per login (so a
// user's own successful logins never lock them out).
type Throttle struct {
	ip, login *Window
}

// NewThrottle returns a Throttle.
func NewThrottle(cfg ThrottleConfig) *Throttle {
	if cfg.IPLimit <= 0 {
		cfg.IPLimit = DefaultIPLimit
	}
	if cfg.LoginLimit <= 0 {
		cfg.LoginLimit = DefaultLoginLimit
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	keys := func(limit int) int {
		if cfg.MaxCounters > 0 {
			return cfg.MaxCounters
		}
		return min(DefaultMaxCounters, max(100, maxHits/limit))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Throttle{
		ip:    NewWindow(cfg.IPLimit, cfg.Window, keys(cfg.IPLimit), cfg.Now),
		login: NewWindow(cfg.LoginLimit, cfg.Window, keys(cfg.LoginLimit), cfg.Now),
	}
}

// Attempt is a login attempt admitted by the throttle. It counts as a
// failure of its login unless Succeeded is called.
type Attempt struct {
	w     *Window
	login string
	at    time.Time
}

// throttleKey is the key a login's failures are counted under: its
// prepared form (see prepareLogin), which lookup also finds the user by, so
// that "ａｌｉｃｅ" and "ALICE" count against the same account as
// "alice". A login PRECIS refuses finds no user by its prepared form, and
// is counted by its lower case. Strings longer than any login are not
// prepared: they cannot name one.
func throttleKey(login string) string {
	if len(login) <= 4*maxLoginLen {
		if p, err := prepareLogin(login); err == nil {
			return p
		}
	}
	return strings.ToLower(login)
}

// Begin admits a login attempt from ip naming login ("" when the request
// named none), before any password is hashed. The attempt is counted
// against the login at once, so a burst of parallel guesses cannot slip
// past the limit while their hashes run. The Decision describes the IP's
// budget, or the login's when that is what refused.
func (t *Throttle) Begin(ip, login string) (Decision, *Attempt) {
	key := throttleKey(login)
	if key != "" {
		if d := t.login.Peek(key); !d.Allowed {
			return d, nil
		}
	}
	d := t.ip.Take(ip)
	switch {
	case !d.Allowed:
		return d, nil
	case key == "":
		return d, &Attempt{}
	}
	// Between Peek and this take another attempt may have filled the
	// login's budget; then this one is refused too.
	ld, at := t.login.take(key)
	if !ld.Allowed {
		return ld, nil
	}
	return d, &Attempt{w: t.login, login: key, at: at}
}

// Succeeded takes the attempt off its login's failures: the password was
// right (or the request never reached a password check).
func (a *Attempt) Succeeded() {
	if a == nil || a.w == nil {
		return
	}
	a.w.Undo(a.login, a.at)
	a.w = nil
}
