// Package captcha wraps github.com/dchest/captcha: it draws image and audio
// captchas for the client API and keeps their answers in a bounded store
// that checks expiry on every read. It imports nothing of vmsauth's own.
//
// The library's package-level functions share one global store whose
// default never expires entries on a quiet box, and its http.Server answers
// unknown ids and lets anyone reload: vmsauth uses only the drawing
// functions (RandomDigits, NewImage, NewAudio) and its own Store, which
// implements the library's Store interface.
package captcha

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"sync"
	"time"
	"unicode"

	dc "github.com/dchest/captcha"
)

// Image size and answer length are fixed: the library panics on tiny sizes,
// so clients never choose them.
const (
	Width  = 240
	Height = 80
	Digits = 5
)

// Defaults for Config.
const (
	DefaultTTL = 60 * time.Second
	DefaultMax = 10000
)

// ErrNotFound is returned for a key that is unknown, used or expired.
var ErrNotFound = errors.New("captcha: unknown or expired key")

// Config tunes a Captchas.
type Config struct {
	TTL time.Duration    // how long an answer stays valid; default 60 s
	Max int              // most answers kept at once; default 10000
	Now func() time.Time // injectable for tests; default time.Now
	// Digits draws the answer; default dchest/captcha's RandomDigits.
	// Injectable so tests elsewhere can solve what they cannot read.
	Digits func(n int) []byte
}

// Grace is how long after a session-limit answer a retry of the same login
// with a session_id needs no new captcha (seed 000's
// captcha_will_required_in).
const Grace = 120 * time.Second

// Captchas issues and checks captchas.
type Captchas struct {
	ttl    time.Duration
	digits func(n int) []byte
	store  *Store
	// grace maps a lower-cased login to the captcha key it solved before a
	// session-limit answer.
	grace *Store
}

// New returns a Captchas with its own store.
func New(cfg Config) *Captchas {
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Max <= 0 {
		cfg.Max = DefaultMax
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Digits == nil {
		cfg.Digits = dc.RandomDigits
	}
	return &Captchas{
		ttl:    cfg.TTL,
		digits: cfg.Digits,
		store:  NewStore(cfg.Max, cfg.TTL, cfg.Now),
		grace:  NewStore(cfg.Max, Grace, cfg.Now),
	}
}

// TTL is how long a new captcha can be answered.
func (c *Captchas) TTL() time.Duration { return c.ttl }

// New makes a captcha and returns its key and PNG image.
func (c *Captchas) New() (key string, png []byte, err error) {
	key, err = newKey()
	if err != nil {
		return "", nil, err
	}
	digits := c.digits(Digits)
	c.store.Set(key, digits)
	var buf bytes.Buffer
	if _, err := dc.NewImage(key, digits, Width, Height).WriteTo(&buf); err != nil {
		return "", nil, err
	}
	return key, buf.Bytes(), nil
}

// Audio speaks the digits of key as WAV in lang (en, ru, ja, zh or pt;
// others fall back to English). It does not use the captcha up.
func (c *Captchas) Audio(key, lang string) ([]byte, error) {
	digits := c.store.Get(key, false)
	if digits == nil {
		return nil, ErrNotFound
	}
	var buf bytes.Buffer
	if _, err := dc.NewAudio(key, digits, lang).WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Verify reports whether answer solves key. Any attempt, right or wrong,
// uses the key up. Spaces are ignored, since people type "12 345".
func (c *Captchas) Verify(key, answer string) bool {
	digits := c.store.Get(key, true)
	if digits == nil {
		return false
	}
	answer = strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, answer)
	if len(answer) != len(digits) {
		return false
	}
	ok := true
	for i, d := range digits {
		ok = ok && answer[i] == '0'+d
	}
	return ok
}

// GrantGrace lets login retry without a new captcha for Grace, after it
// solved key but hit its session limit.
func (c *Captchas) GrantGrace(login, key string) {
	c.grace.Set(strings.ToLower(login), []byte(key))
}

// HasGrace reports whether login may skip the captcha now. key is the
// captcha key the retry sent, if any: it must be the one solved.
func (c *Captchas) HasGrace(login, key string) bool {
	k := c.grace.Get(strings.ToLower(login), false)
	return k != nil && (key == "" || key == string(k))
}

// UseGrace spends login's grace; it reports whether there was one to spend.
func (c *Captchas) UseGrace(login, key string) bool {
	k := c.grace.Get(strings.ToLower(login), true)
	return k != nil && (key == "" || key == string(k))
}

// keyChars are the characters of a captcha key.
const keyChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// newKey returns a random 24-character key (about 143 bits), so keys
// cannot be guessed to fetch someone else's audio.
func newKey() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	for i := range b {
		b[i] = keyChars[int(b[i])%len(keyChars)]
	}
	return string(b), nil
}

// Store keeps captcha answers in memory, at most max of them, each for ttl.
// When full it drops the oldest; because every entry lives equally long,
// that is also the one closest to expiry. It implements dchest/captcha's
// Store interface.
type Store struct {
	mu    sync.Mutex
	max   int
	ttl   time.Duration
	now   func() time.Time
	items map[string]entry
	order []string // keys in insertion order; a ring of max slots
	head  int      // index of the oldest key in order
}

type entry struct {
	digits  []byte
	expires time.Time
}

var _ dc.Store = (*Store)(nil)

// NewStore returns an empty Store.
func NewStore(max int, ttl time.Duration, now func() time.Time) *Store {
	return &Store{max: max, ttl: ttl, now: now, items: make(map[string]entry, 64), order: make([]string, 0, 64)}
}

// Set stores digits under id, dropping the oldest entry if full.
func (s *Store) Set(id string, digits []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.items[id]; ok {
		// A key set again keeps its place in the ring; it may then be
		// dropped a little early when the store is full, never late.
		s.items[id] = entry{digits: append([]byte(nil), digits...), expires: s.now().Add(s.ttl)}
		return
	}
	if len(s.order) < s.max {
		s.order = append(s.order, id)
	} else {
		// The ring is full: its oldest slot is reused. The key it named may
		// already be gone (used or expired); deleting it again is harmless.
		delete(s.items, s.order[s.head])
		s.order[s.head] = id
		s.head = (s.head + 1) % s.max
	}
	s.items[id] = entry{digits: append([]byte(nil), digits...), expires: s.now().Add(s.ttl)}
}

// Get returns the digits of id, or nil if unknown or expired; clear
// removes the entry.
func (s *Store) Get(id string, clear bool) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.items[id]
	if !ok {
		return nil
	}
	live := s.now().Before(e.expires)
	if clear || !live {
		delete(s.items, id)
	}
	if !live {
		return nil
	}
	return e.digits
}

// Len returns how many answers the store holds.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.items)
}
