// Package captcha draws image and audio captchas for the client API with
// github.com/dchest/captcha, and checks them without keeping any per-captcha
// state: a captcha's key is its digits and expiry sealed with a secret of
// the box (XChaCha20-Poly1305), so issuing one stores nothing and a flood
// of captcha requests can never push out another client's pending captcha.
// Single use is kept by remembering each key from its first use until it
// expires (Used). It imports nothing of vmsauth's own.
//
// Of the library, only the drawing functions (RandomDigits, NewImage,
// NewAudio) are used: its global store never expires entries on a quiet
// box, and its http.Server answers unknown ids and lets anyone reload.
package captcha

import (
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode"

	dc "github.com/dchest/captcha"
	"golang.org/x/crypto/chacha20poly1305"
)

// Image size and answer length are fixed: the library panics on tiny sizes,
// so clients never choose them.
const (
	Width  = 240
	Height = 80
	Digits = 5
)

// SecretSize is the length of the secret that seals captcha keys.
const SecretSize = chacha20poly1305.KeySize

// Defaults for Config.
const (
	DefaultTTL      = 60 * time.Second
	DefaultMaxGrace = 10000
)

// ErrNotFound is returned for a key that is not one of ours, or expired.
var ErrNotFound = errors.New("captcha: unknown or expired key")

// Config tunes a Captchas.
type Config struct {
	// Secret seals the keys; SecretSize random bytes. Boxes that share it
	// (and a Used) can check each other's captchas.
	Secret []byte
	TTL    time.Duration    // how long an answer stays valid; default 60 s
	Now    func() time.Time // injectable for tests; default time.Now
	// Used remembers answered keys; default an in-memory UsedMemory.
	Used Used
	// MaxGrace bounds the session-limit graces held at once; default 10000.
	MaxGrace int
	// Graces holds the session-limit graces; default in this box's memory
	// (a Store of MaxGrace). Boxes of a site share one, so that a retry
	// after a 419 may reach any box.
	Graces Graces
	// Digits draws the answer; default dchest/captcha's RandomDigits.
	// Injectable so tests elsewhere can solve what they cannot read.
	Digits func(n int) []byte
	// Image draws the PNG of digits, seeded by key; default DrawImage.
	// Injectable so a test can flood thousands of captchas without paying
	// 1.6 ms of drawing for each.
	Image func(key string, digits []byte) ([]byte, error)
}

// Used remembers which captchas have been answered, so that each is
// answered once. It is an interface so that boxes sharing a secret can
// share it too.
type Used interface {
	// Use records id as used until expires and reports whether this was
	// its first use. An error means it cannot tell: the answer is refused.
	Use(id string, expires time.Time) (first bool, err error)
}

// Graces holds session-limit graces: which login may retry without a new
// captcha by sending key (see GrantGrace). Logins come lower-cased. An
// error means it cannot tell: the retry then needs a captcha.
type Graces interface {
	Grant(key, login string, expires time.Time) error
	Has(key, login string) (bool, error)
	// Take spends the grace of key if it was given to login.
	Take(key, login string) (bool, error)
}

// memoryGraces is Graces in a Store.
type memoryGraces struct{ s *Store }

func (m memoryGraces) Grant(key, login string, _ time.Time) error {
	m.s.Set(key, []byte(login))
	return nil
}

func (m memoryGraces) Has(key, login string) (bool, error) {
	l := m.s.Get(key, false)
	return l != nil && string(l) == login, nil
}

func (m memoryGraces) Take(key, login string) (bool, error) {
	return m.s.take(key, []byte(login)), nil
}

// Grace is how long after a session-limit answer a retry of the same login
// with a session_id needs no new captcha (seed 000's
// captcha_will_required_in).
const Grace = 120 * time.Second

// Captchas issues and checks captchas.
type Captchas struct {
	ttl    time.Duration
	now    func() time.Time
	aead   cipher.AEAD
	used   Used
	digits func(n int) []byte
	image  func(key string, digits []byte) ([]byte, error)
	// grace maps a captcha key that a login solved before a session-limit
	// answer to that login, lower-cased. Entries are made only by logins
	// with a right password, so its bound is never reached by strangers.
	grace Graces
}

// New returns a Captchas sealing keys with cfg.Secret.
func New(cfg Config) (*Captchas, error) {
	aead, err := chacha20poly1305.NewX(cfg.Secret)
	if err != nil {
		return nil, fmt.Errorf("captcha secret: want %d bytes, got %d", SecretSize, len(cfg.Secret))
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Used == nil {
		cfg.Used = NewUsedMemory(DefaultMaxUsed, cfg.Now)
	}
	if cfg.MaxGrace <= 0 {
		cfg.MaxGrace = DefaultMaxGrace
	}
	if cfg.Graces == nil {
		cfg.Graces = memoryGraces{NewStore(cfg.MaxGrace, Grace, cfg.Now)}
	}
	if cfg.Digits == nil {
		cfg.Digits = dc.RandomDigits
	}
	if cfg.Image == nil {
		cfg.Image = DrawImage
	}
	return &Captchas{
		ttl: cfg.TTL, now: cfg.Now, aead: aead, used: cfg.Used, digits: cfg.Digits, image: cfg.Image,
		grace: cfg.Graces,
	}, nil
}

// NewSecret returns a fresh random secret for Config.Secret.
func NewSecret() ([]byte, error) {
	b := make([]byte, SecretSize)
	_, err := rand.Read(b)
	return b, err
}

// TTL is how long a new captcha can be answered.
func (c *Captchas) TTL() time.Duration { return c.ttl }

// keyAD binds sealed keys to their purpose and format version, so nothing
// else sealed with the same secret can pass for a captcha.
var keyAD = []byte("vmsauth captcha key v1")

// keyEncoding writes keys safely into URLs (the audio path) and JSON.
var keyEncoding = base64.RawURLEncoding

// sealed is what a key carries: expiry (unix milliseconds) and digits.
const sealedLen = 8 + Digits

// New makes a captcha and returns its key and PNG image.
func (c *Captchas) New() (key string, png []byte, err error) {
	key, digits, err := c.seal()
	if err != nil {
		return "", nil, err
	}
	if png, err = c.image(key, digits); err != nil {
		return "", nil, err
	}
	return key, png, nil
}

// DrawImage draws digits as a Width×Height PNG. The key seeds the
// distortion, so the same key always shows the same picture and asking
// again for it reveals nothing new.
func DrawImage(key string, digits []byte) ([]byte, error) {
	var buf bytes.Buffer
	if _, err := dc.NewImage(key, digits, Width, Height).WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// seal draws the digits of a new captcha and seals them, with its expiry,
// into its key.
func (c *Captchas) seal() (key string, digits []byte, err error) {
	digits = c.digits(Digits)
	if len(digits) != Digits {
		return "", nil, fmt.Errorf("captcha: drew %d digits, want %d", len(digits), Digits)
	}
	plain := make([]byte, 8, sealedLen)
	binary.BigEndian.PutUint64(plain, uint64(c.now().Add(c.ttl).UnixMilli()))
	plain = append(plain, digits...)
	nonce := make([]byte, chacha20poly1305.NonceSizeX, chacha20poly1305.NonceSizeX+sealedLen+chacha20poly1305.Overhead)
	if _, err := rand.Read(nonce); err != nil {
		return "", nil, err
	}
	return keyEncoding.EncodeToString(c.aead.Seal(nonce, nonce, plain, keyAD)), digits, nil
}

// open returns the digits and expiry sealed in key, and the nonce that
// names it, if key is ours and not expired.
func (c *Captchas) open(key string) (digits []byte, expires time.Time, id string, err error) {
	raw, err := keyEncoding.DecodeString(key)
	if err != nil || len(raw) != chacha20poly1305.NonceSizeX+sealedLen+chacha20poly1305.Overhead {
		return nil, time.Time{}, "", ErrNotFound
	}
	nonce := raw[:chacha20poly1305.NonceSizeX]
	plain, err := c.aead.Open(nil, nonce, raw[chacha20poly1305.NonceSizeX:], keyAD)
	if err != nil || len(plain) != sealedLen {
		return nil, time.Time{}, "", ErrNotFound
	}
	expires = time.UnixMilli(int64(binary.BigEndian.Uint64(plain)))
	if !c.now().Before(expires) {
		return nil, time.Time{}, "", ErrNotFound
	}
	// The nonce is random and authenticated: it names this key alone.
	return plain[8:], expires, string(nonce), nil
}

// Audio speaks the digits of key as WAV in lang (en, ru, ja, zh or pt;
// others fall back to English). It does not use the captcha up.
func (c *Captchas) Audio(key, lang string) ([]byte, error) {
	digits, _, _, err := c.open(key)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if _, err := dc.NewAudio(key, digits, lang).WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Verify reports whether answer solves key. Any attempt, right or wrong,
// uses the key up. Spaces are ignored, since people type "12 345". An
// error means the used-key memory failed; the answer is then refused.
func (c *Captchas) Verify(key, answer string) (bool, error) {
	digits, expires, id, err := c.open(key)
	if err != nil {
		return false, nil
	}
	first, err := c.used.Use(id, expires)
	if err != nil || !first {
		return false, err
	}
	answer = strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, answer)
	want := make([]byte, len(digits))
	for i, d := range digits {
		want[i] = '0' + d
	}
	return subtle.ConstantTimeCompare([]byte(answer), want) == 1, nil
}

// GrantGrace lets login retry without a new captcha for Grace, after it
// solved key but hit its session limit. The retry must send key.
// Failing to record it (a site's etcd out) only means the retry needs a
// captcha.
func (c *Captchas) GrantGrace(login, key string) {
	_ = c.grace.Grant(key, strings.ToLower(login), c.now().Add(Grace))
}

// HasGrace reports whether a retry of login that sent key may skip the
// captcha now: key must be the one the session-limit answer returned.
func (c *Captchas) HasGrace(login, key string) bool {
	if key == "" {
		return false
	}
	ok, err := c.grace.Has(key, strings.ToLower(login))
	return ok && err == nil
}

// UseGrace spends the grace of login and key; it reports whether there was
// one to spend. A retry naming another login leaves the grace alone.
func (c *Captchas) UseGrace(login, key string) bool {
	if key == "" {
		return false
	}
	ok, err := c.grace.Take(key, strings.ToLower(login))
	return ok && err == nil
}

// DefaultMaxUsed bounds UsedMemory. Only keys this box (or a box sharing
// its secret) drew in the last TTL can be added, and drawing costs about
// 1.6 ms of CPU: two cores draw about 620 a second, 37 000 a minute.
const DefaultMaxUsed = 100000

// ErrUsedFull is returned by UsedMemory when it holds its maximum of live
// keys: it cannot remember another, so it refuses rather than forget one.
var ErrUsedFull = errors.New("captcha: too many answered captchas to remember")

// usedSweepEvery is how often UsedMemory drops expired keys.
const usedSweepEvery = 10 * time.Second

// UsedMemory is the in-memory Used of a single box.
type UsedMemory struct {
	mu        sync.Mutex
	max       int
	now       func() time.Time
	keys      map[string]time.Time
	nextSweep time.Time
}

// NewUsedMemory returns an empty UsedMemory holding at most max live keys.
func NewUsedMemory(max int, now func() time.Time) *UsedMemory {
	return &UsedMemory{max: max, now: now, keys: make(map[string]time.Time)}
}

// Use implements Used.
func (u *UsedMemory) Use(id string, expires time.Time) (bool, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	now := u.now()
	if !now.Before(u.nextSweep) {
		for k, exp := range u.keys {
			if !now.Before(exp) {
				delete(u.keys, k)
			}
		}
		u.nextSweep = now.Add(usedSweepEvery)
	}
	if exp, ok := u.keys[id]; ok && now.Before(exp) {
		return false, nil
	}
	if len(u.keys) >= u.max {
		return false, ErrUsedFull
	}
	u.keys[id] = expires
	return true, nil
}

// Len returns how many keys u remembers.
func (u *UsedMemory) Len() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.keys)
}

// Store keeps small values in memory, at most max of them, each for ttl.
// When full it drops the oldest; because every entry lives equally long,
// that is also the one closest to expiry. It holds session-limit graces.
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
	value   []byte
	expires time.Time
}

// NewStore returns an empty Store.
func NewStore(max int, ttl time.Duration, now func() time.Time) *Store {
	return &Store{max: max, ttl: ttl, now: now, items: make(map[string]entry, 64), order: make([]string, 0, 64)}
}

// Set stores value under id, dropping the oldest entry if full.
func (s *Store) Set(id string, value []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.items[id]; ok {
		// A key set again keeps its place in the ring; it may then be
		// dropped a little early when the store is full, never late.
		s.items[id] = entry{value: append([]byte(nil), value...), expires: s.now().Add(s.ttl)}
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
	s.items[id] = entry{value: append([]byte(nil), value...), expires: s.now().Add(s.ttl)}
}

// Get returns the value of id, or nil if unknown or expired; clear
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
	return e.value
}

// take removes id and reports true if it is live and holds want; otherwise
// it leaves a live entry in place.
func (s *Store) take(id string, want []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.items[id]
	if !ok || !s.now().Before(e.expires) || !bytes.Equal(e.value, want) {
		return false
	}
	delete(s.items, id)
	return true
}

// Len returns how many entries the store holds.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.items)
}
