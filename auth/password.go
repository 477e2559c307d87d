package auth

import (
	"context"
	"crypto/rand"
	"errors"
	"math/big"
	"runtime"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Password length bounds in bytes. bcrypt reads only the first 72 bytes, so
// a longer password would silently share a hash with its prefix: refuse it.
const (
	MinPassword = 8
	MaxPassword = 72
)

// Bcrypt costs an imported hash may have. Below 8 a hash is cheap to
// crack and answers so fast that the time tells the login exists; above 14
// one verification takes seconds (at 31, days), and two logins against it
// would hold every hash worker.
const (
	MinImportCost = 8
	MaxImportCost = 14
)

// checkPasswordRules validates a new password into v. The bounds are in
// bytes, as bcrypt counts, and the messages say so ("min_bytes").
func checkPasswordRules(v *ValidationError, field, pw string) {
	switch {
	case pw == "":
		v.Add(field, "required", "")
	case len(pw) < MinPassword:
		v.Add(field, "min_bytes", strconv.Itoa(MinPassword))
	case len(pw) > MaxPassword:
		v.Add(field, "max_bytes", strconv.Itoa(MaxPassword))
	}
}

// checkImportedHash validates a bcrypt hash brought from another system.
func checkImportedHash(v *ValidationError, field, hash string) {
	if !ValidHash(hash) {
		v.Add(field, "bcrypt", "")
		return
	}
	if cost, _ := bcrypt.Cost([]byte(hash)); cost < MinImportCost || cost > MaxImportCost {
		v.Add(field, "bcrypt_cost", strconv.Itoa(cost))
	}
}

// hasher runs bcrypt on a pool no wider than the cores, so a flood of
// password guesses queues here instead of starving token checks.
type hasher struct {
	cost int
	// maxCost is the highest cost verify runs: the highest an import may
	// have, or the configured cost if that is higher.
	maxCost int
	slots   chan struct{}
	dummy   []byte
	// lift is how long a hash may wait for idle cores before it competes
	// for them: a few times what one takes on a free core.
	lift time.Duration
}

func newHasher(cost, width int) (*hasher, error) {
	// A hash of nothing anyone knows, with the configured cost: unknown
	// logins are verified against it so they take as long as wrong passwords.
	start := time.Now()
	dummy, err := bcrypt.GenerateFromPassword([]byte("vmsauth dummy password"), cost)
	if err != nil {
		return nil, err
	}
	lift := max(4*time.Since(start), 50*time.Millisecond)
	return &hasher{cost: cost, maxCost: max(cost, MaxImportCost), slots: make(chan struct{}, width), dummy: dummy, lift: lift}, nil
}

func (h *hasher) acquire(ctx context.Context) error {
	select {
	case h.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *hasher) release() { <-h.slots }

// errUnverifiable means a stored hash is not one verify runs: not bcrypt,
// or of a cost above maxCost. The login fails as a wrong password would.
var errUnverifiable = errors.New("auth: stored password hash cannot be verified")

// verify reports whether pw matches hash, taking at least as long as a
// verification at the configured cost, so that the time does not tell an
// unknown login (an empty hash, checked against the dummy) from a known
// one. A hash cheaper than the configured cost is therefore followed by
// the dummy too. A hash verify refuses to run costs the dummy, and
// errUnverifiable.
func (h *hasher) verify(ctx context.Context, hash, pw string) (bool, error) {
	if err := h.acquire(ctx); err != nil {
		return false, err
	}
	defer h.release()
	cost, err := bcrypt.Cost([]byte(hash))
	if hash != "" && (err != nil || cost > h.maxCost) {
		h.lowPriority(func() { _ = bcrypt.CompareHashAndPassword(h.dummy, []byte(pw)) })
		return false, errUnverifiable
	}
	stored := []byte(hash)
	if hash == "" {
		stored = h.dummy
	}
	h.lowPriority(func() {
		err = bcrypt.CompareHashAndPassword(stored, []byte(pw))
		if hash != "" && cost < h.cost {
			_ = bcrypt.CompareHashAndPassword(h.dummy, []byte(pw))
		}
	})
	return err == nil && hash != "" && len(pw) <= MaxPassword, nil
}

// stale reports whether a stored hash should be rehashed at the configured
// cost after a successful login.
func (h *hasher) stale(hash string) bool {
	cost, err := bcrypt.Cost([]byte(hash))
	return err == nil && cost != h.cost
}

func (h *hasher) hash(ctx context.Context, pw string) (string, error) {
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	defer h.release()
	var b []byte
	var err error
	h.lowPriority(func() { b, err = bcrypt.GenerateFromPassword([]byte(pw), h.cost) })
	return string(b), err
}

// lowPriority runs fn on an OS thread of its own that gives way to every
// other thread (see idleThread), and waits for it. The pool leaves one P
// free for token checks, but the kernel still shares the cores between
// threads: this makes it run a check's thread first. If fn has not finished
// after h.lift, the box is busy with other work and the thread competes
// normally again, at nice 10, so that logins slow down rather than stall.
func (h *hasher) lowPriority(fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Never unlocked: the thread then exits with the goroutine, so its
		// priority never reaches another goroutine.
		runtime.LockOSThread()
		lift := idleThread()
		var mu sync.Mutex
		running := true
		t := time.AfterFunc(h.lift, func() {
			mu.Lock()
			defer mu.Unlock()
			if running { // the thread id must still be this thread's
				lift()
			}
		})
		fn()
		t.Stop()
		mu.Lock()
		running = false
		mu.Unlock()
	}()
	<-done
}

// ValidHash reports whether s is a bcrypt hash vmsauth can verify ($2a$,
// $2b$ or $2y$, as PHP and Laravel write them), for importing users.
func ValidHash(s string) bool {
	_, err := bcrypt.Cost([]byte(s))
	return err == nil && len(s) == 60 && s[0] == '$' && s[1] == '2' &&
		(s[2] == 'a' || s[2] == 'b' || s[2] == 'y') && s[3] == '$'
}

// passwordAlphabet leaves out look-alikes (0/O, 1/l/I) because generated
// passwords are read off a console and typed by hand.
const passwordAlphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"

// GeneratePassword returns a random password of 20 characters (about 116
// bits).
func GeneratePassword() (string, error) {
	b := make([]byte, 20)
	max := big.NewInt(int64(len(passwordAlphabet)))
	for i := range b {
		n, err := rand.Int(rand.Reader, max)
		if err != nil {
			return "", err
		}
		b[i] = passwordAlphabet[n.Int64()]
	}
	return string(b), nil
}
