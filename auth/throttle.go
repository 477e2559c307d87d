package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/maphash"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
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
	// MaxLabel clips a login kept for logs and the audit trail: a client
	// may send 64 KiB of it.
	MaxLabel = 255
)

// ThrottleKey is the key a client IP is counted under by the per-IP
// limits (logins and captchas): an IPv4 address is its own key, also when
// written as ::ffff:a.b.c.d; an IPv6 address counts with the rest of its
// /64, since one host is given a whole /64 and picks addresses from it at
// will. Anything that is not an IP address is its own key.
func ThrottleKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return a.String()
	}
	p, _ := a.Prefix(64)
	return p.String()
}

// Clip bounds a client-chosen string (a login) kept in logs or the audit
// trail to MaxLabel bytes, cut on a character boundary.
func Clip(s string) string {
	if len(s) <= MaxLabel {
		return s
	}
	n := MaxLabel
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Decision is the outcome of a throttled request, with what the client is
// told about its budget.
type Decision struct {
	Allowed   bool
	Limit     int
	Remaining int
	// Reset is when the oldest counted request leaves the window, so the
	// next one is allowed again (meaningful when !Allowed).
	Reset time.Time
	// First marks the first refusal of a run: the one to log and audit.
	// Later refusals of the same key are only counted, and reported as
	// one Refusal when the key's window ends.
	First bool
	// Kind names what refused: "ip", "login", or "full" (the table of
	// client keys is full; see Window).
	Kind string
	// Err is set when the site's shared counters could not be read or
	// written (etcd unavailable): the request is refused, never let
	// through uncounted, and answered as the store's outage (503).
	Err error
}

// RetryAfter is how long a refused client must wait, rounded up to whole
// seconds as the Retry-After header wants them.
func (d Decision) RetryAfter(now time.Time) int {
	s := int((d.Reset.Sub(now) + time.Second - 1) / time.Second)
	return max(s, 1)
}

// Refusal is a finished run of refused requests of one key: written to
// the log and the audit trail once, rather than once per request.
type Refusal struct {
	Kind  string // "ip", "login" or "full"
	Label string // the client key, or the login (clipped) as first refused
	IP    string // the client IP of the first refused request
	Count int    // requests refused
	Since time.Time
}

// Window counts events per key over a sliding window: a key may have at
// most limit events in any span of the window's length. It remembers only
// the last limit event times of each key. A key is never dropped while it
// holds an event in the window, so no traffic naming other keys can reset
// it; with maxKeys set, a new key is refused (Kind "full") while maxKeys
// keys hold events, which bounds memory against a flood of addresses.
type Window struct {
	mu     sync.Mutex
	limit  int
	window int64 // nanoseconds
	max    int   // 0: no bound of its own
	kind   string
	report bool // keep finished runs for Ended (a Throttle's windows)
	now    func() time.Time
	keys   map[string]*counter
	peak   int // most keys since keys was made
	// The counters form a list ordered by their latest event, newest at
	// head, so the expired ones are found at its tail.
	head, tail *counter
	ended      []Refusal
	full       run // refusals of new keys while full
}

// counter is one key's events. A flood can make 100 000 of them, so it
// is kept small: times as Unix nanoseconds, the list links inline, and
// the tally of refusals allocated only for a key that was refused.
type counter struct {
	key        string
	hits       []int64 // oldest first, at most limit
	prev, next *counter
	run        *run
}

// run tallies the refused requests of one lock.
type run struct {
	refused int
	since   time.Time
	label   string
	ip      string
}

// NewWindow returns an empty Window holding at most maxKeys keys at once
// (0: no bound).
func NewWindow(limit int, window time.Duration, maxKeys int, now func() time.Time) *Window {
	return &Window{limit: limit, window: int64(window), max: maxKeys, kind: "ip", now: now, keys: map[string]*counter{}}
}

// Take counts one event for key if the key is under its limit, and says
// whether it was allowed. A refused event is not counted, so a lock lasts
// until the window frees and never longer.
func (w *Window) Take(key string) Decision {
	d, _ := w.take(key, key, key, true)
	return d
}

// Peek says whether key is under its limit without counting anything.
func (w *Window) Peek(key string) Decision {
	w.mu.Lock()
	defer w.mu.Unlock()
	d, _ := w.peek(key, w.now().UnixNano())
	return d
}

// take judges an event of key and counts it if allowed and count is set.
// A refusal is tallied under label and ip. It also returns the time the
// event was counted at.
func (w *Window) take(key, label, ip string, count bool) (Decision, int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	t := w.now()
	now := t.UnixNano()
	w.purge(now)
	d, c := w.peek(key, now)
	switch {
	case !d.Allowed:
		if c.run == nil {
			c.run = &run{}
		}
		d.First = c.run.refuse(t, label, ip)
		return d, now
	case c == nil && w.max > 0 && len(w.keys) >= w.max:
		// Every tracked key holds an event in the window (purge dropped
		// the rest): a slot frees when the oldest latest event leaves.
		d = Decision{Limit: w.limit, Reset: time.Unix(0, w.tail.hits[len(w.tail.hits)-1]+w.window), Kind: "full"}
		d.First = w.full.refuse(t, "", ip)
		return d, now
	}
	if w.full.refused > 0 && c == nil {
		w.end(&w.full, "full")
	}
	if count {
		if c == nil {
			// Room grows with use: a high limit must not reserve it for
			// every key.
			c = &counter{key: key, hits: make([]int64, 0, 1)}
			w.keys[key] = c
		} else {
			w.unlink(c)
		}
		c.hits = append(c.hits, now)
		w.pushFront(c)
		d.Remaining--
	}
	return d, now
}

// refuse tallies a refused request and reports whether it starts a run.
func (r *run) refuse(now time.Time, label, ip string) bool {
	r.refused++
	if r.refused > 1 {
		return false
	}
	r.since, r.label, r.ip = now, Clip(label), ip
	return true
}

// end reports r's run, if any, as finished and clears it.
func (w *Window) end(r *run, kind string) {
	if r != nil && r.refused > 0 && w.report {
		w.ended = append(w.ended, Refusal{Kind: kind, Label: r.label, IP: r.ip, Count: r.refused, Since: r.since})
	}
	if r != nil {
		*r = run{}
	}
}

// Ended returns the runs of refusals that finished since the last call:
// keys whose lock ended, found when the key is next seen or when its
// events leave the window.
func (w *Window) Ended() []Refusal {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.ended
	w.ended = nil
	return out
}

// Undo removes one event counted at t, if it is still there.
func (w *Window) Undo(key string, t int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c, ok := w.keys[key]
	if !ok {
		return
	}
	for i, h := range c.hits {
		if h == t {
			c.hits = append(c.hits[:i], c.hits[i+1:]...)
			break
		}
	}
	if len(c.hits) == 0 {
		w.remove(c)
	}
}

// Len returns how many keys are tracked.
func (w *Window) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.keys)
}

// purge drops the keys whose events all left the window. Keys are ordered
// by their latest event, so it stops at the first key still holding one.
func (w *Window) purge(now int64) {
	for c := w.tail; c != nil && now >= c.hits[len(c.hits)-1]+w.window; c = w.tail {
		w.remove(c)
	}
	// A Go map keeps its room when emptied: after a flood, copy the few
	// keys left into a map of their size, so the memory goes back.
	if w.peak = max(w.peak, len(w.keys)); w.peak > 1024 && len(w.keys) < w.peak/8 {
		keys := make(map[string]*counter, len(w.keys))
		for k, c := range w.keys {
			keys[k] = c
		}
		w.keys, w.peak = keys, len(keys)
	}
}

func (w *Window) remove(c *counter) {
	w.end(c.run, w.kind)
	w.unlink(c)
	delete(w.keys, c.key)
}

func (w *Window) unlink(c *counter) {
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		w.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else {
		w.tail = c.prev
	}
	c.prev, c.next = nil, nil
}

func (w *Window) pushFront(c *counter) {
	c.next = w.head
	if w.head != nil {
		w.head.prev = c
	}
	w.head = c
	if w.tail == nil {
		w.tail = c
	}
}

// peek drops key's events that left the window and judges the next one.
func (w *Window) peek(key string, now int64) (Decision, *counter) {
	c, ok := w.keys[key]
	if !ok {
		return Decision{Allowed: true, Limit: w.limit, Remaining: w.limit}, nil
	}
	var d Decision
	c.hits, d = judge(c.hits, now, w.window, w.limit, w.kind)
	if len(c.hits) == 0 {
		w.remove(c)
		return d, nil
	}
	if d.Allowed && c.run != nil {
		w.end(c.run, w.kind)
		c.run = nil
	}
	return d, c
}

// judge is the sliding-window rule of one key, the one both a Window and
// the site's shared counters apply: hits are the key's event times (Unix
// nanoseconds, oldest first); it returns those still in the window at now
// (a tail of hits) and whether one more event is allowed: fewer than limit
// events in the window. Refused, Reset is when the oldest counted event
// leaves it.
func judge(hits []int64, now, window int64, limit int, kind string) ([]int64, Decision) {
	d := Decision{Allowed: true, Limit: limit, Remaining: limit}
	cut := 0
	for cut < len(hits) && now >= hits[cut]+window {
		cut++
	}
	hits = hits[cut:]
	d.Remaining = limit - len(hits)
	if d.Remaining <= 0 {
		d.Allowed, d.Remaining, d.Kind = false, 0, kind
		d.Reset = time.Unix(0, hits[len(hits)-limit]+window)
	}
	return hits, d
}

// UserFinder finds a user by login, case-insensitively, or returns
// ErrUserNotFound.
type UserFinder interface {
	UserByLogin(ctx context.Context, login string) (*User, error)
}

// ThrottleConfig tunes a Throttle; zero values take the defaults.
type ThrottleConfig struct {
	IPLimit    int
	LoginLimit int
	Window     time.Duration
	// MaxCounters bounds the client keys held at once; default 10000,
	// fewer for limits over 20. Login counters need no bound of their
	// own: each event in them came with an event of a client key.
	MaxCounters int
	// Users tells existing logins from unknown ones; nil counts every
	// login by name. SetUsers sets it later.
	Users UserFinder
	Now   func() time.Time
	// Shared, on a box of a site, holds the counters all its boxes count
	// in together (see SharedCounters); nil on a single box.
	Shared SharedCounters
	// HashKey keys the hash that unknown logins are counted under. The
	// boxes of a site must hash alike, so a site box gives the site's key;
	// empty, a seed of this process is used.
	HashKey []byte
}

// Throttle limits password logins on all three APIs together: requests per
// client key (every request counts) and failed attempts per login (so a
// user's own successful logins never lock them out).
//
// A login's failures are counted by user id when the login exists and by a
// keyed hash of the folded name when it does not, in one Window that drops
// a key only when its events have left the window. Both kinds are judged
// by the same rule on the same data, so the answers never depend on whether
// the login exists; and since every event of that Window came with an
// event of a client key, whose count is bounded, its memory is bounded too.
type Throttle struct {
	ip, login *Window
	users     UserFinder
	seed      maphash.Seed
	hashKey   []byte
	shared    SharedCounters
	now       func() time.Time
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
	keys := cfg.MaxCounters
	if keys <= 0 {
		keys = min(DefaultMaxCounters, max(100, maxHits/cfg.IPLimit))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	ip := NewWindow(cfg.IPLimit, cfg.Window, keys, cfg.Now)
	login := NewWindow(cfg.LoginLimit, cfg.Window, 0, cfg.Now)
	login.kind = "login"
	ip.report, login.report = true, true
	return &Throttle{
		ip:      ip,
		login:   login,
		users:   cfg.Users,
		seed:    maphash.MakeSeed(),
		hashKey: cfg.HashKey,
		shared:  cfg.Shared,
		now:     cfg.Now,
	}
}

// SetUsers sets where the throttle looks logins up, if none was
// configured; call it before the first Begin.
func (t *Throttle) SetUsers(u UserFinder) {
	if t.users == nil {
		t.users = u
	}
}

// loginKey is the counter of a login: its user's id when it exists, else
// a keyed hash of its throttleKey, the form lookups find users by (so "Bob",
// "bob" and "ｂｏｂ" share a counter whether or not bob exists), which also
// keeps a 64 KiB login from costing 64 KiB.
//
// A lookup that fails for another reason than an unknown login is returned
// as an error on a site box, where the store is etcd and may be out: its
// counters are not reachable either, and counting the login by its hash
// would split a real user's failures over two keys.
func (t *Throttle) loginKey(ctx context.Context, login string) (string, error) {
	if t.users != nil {
		u, err := t.users.UserByLogin(ctx, login)
		if err == nil && u != nil {
			return "u" + strconv.FormatInt(u.ID, 10), nil
		}
		if err != nil && t.shared != nil && !errors.Is(err, ErrUserNotFound) {
			return "", err
		}
	}
	if t.hashKey != nil {
		m := hmac.New(sha256.New, t.hashKey)
		m.Write([]byte(throttleKey(login)))
		return "n" + hex.EncodeToString(m.Sum(nil)[:16]), nil
	}
	return "n" + string(binary.BigEndian.AppendUint64(nil, maphash.String(t.seed, throttleKey(login)))), nil
}

// Attempt is a login attempt admitted by the throttle. It counts as a
// failure of its login unless Succeeded is called.
type Attempt struct {
	w   *Window
	key string
	at  int64
	// On a site box, the shared counter the attempt was counted in too.
	shared SharedCounters
}

// throttleKey is the name an unknown login's failures are counted under: its
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
// budget, or the login's when that is what refused. On a site box
// (ThrottleConfig.Shared) the limits are the site's (see beginShared), and
// a Decision with Err set refuses the request because the site's counters
// are out of reach.
func (t *Throttle) Begin(ctx context.Context, ip, login string) (Decision, *Attempt) {
	ipKey := ThrottleKey(ip)
	// A client already over its limit costs no lookup.
	if d, _ := t.ip.take(ipKey, ipKey, ip, false); !d.Allowed {
		return d, nil
	}
	if t.shared != nil {
		return t.beginShared(ctx, ip, ipKey, login)
	}
	var key string
	if login != "" {
		key, _ = t.loginKey(ctx, login)
		if d, _ := t.login.take(key, login, ip, false); !d.Allowed {
			return d, nil
		}
	}
	d, _ := t.ip.take(ipKey, ipKey, ip, true)
	switch {
	case !d.Allowed:
		return d, nil
	case key == "":
		return d, &Attempt{}
	}
	// Between the check and this take another attempt may have filled
	// the login's budget; then this one is refused too.
	ld, at := t.login.take(key, login, ip, true)
	if !ld.Allowed {
		return ld, nil
	}
	return d, &Attempt{w: t.login, key: key, at: at}
}

// Ended returns the runs of refusals that finished since the last call,
// for the log and the audit trail.
func (t *Throttle) Ended() []Refusal {
	return append(t.ip.Ended(), t.login.Ended()...)
}

// Succeeded takes the attempt off its login's failures: the password was
// right (or the request never reached a password check).
func (a *Attempt) Succeeded() {
	if a == nil || a.w == nil {
		return
	}
	a.w.Undo(a.key, a.at)
	if a.shared != nil {
		a.undoShared()
	}
	a.w = nil
}
