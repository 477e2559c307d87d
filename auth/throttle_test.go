package auth_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"vmsauth/auth"
	"vmsauth/internal/testkit"
)

func newThrottle(t *testing.T) (*auth.Throttle, *testkit.Clock) {
	t.Helper()
	clk := testkit.NewClock(time.Date(2026, 1, 10, 9, 0, 0, 0, time.UTC))
	return auth.NewThrottle(auth.ThrottleConfig{Now: clk.Now}), clk
}

func TestThrottlePerIP(t *testing.T) {
	th, clk := newThrottle(t)
	var first time.Time
	for i := range auth.DefaultIPLimit {
		if i == 0 {
			first = clk.Now()
		}
		d, att := th.Begin("192.0.2.1", fmt.Sprintf("user%d", i))
		if !d.Allowed || d.Limit != 10 || d.Remaining != 9-i {
			t.Fatalf("request %d: %+v", i+1, d)
		}
		att.Succeeded() // successes count per IP all the same
		clk.Advance(time.Second)
	}
	d, _ := th.Begin("192.0.2.1", "someone")
	if d.Allowed {
		t.Fatal("11th request from one IP allowed")
	}
	if want := first.Add(auth.DefaultWindow); !d.Reset.Equal(want) || d.RetryAfter(clk.Now()) != 590 {
		t.Fatalf("reset %s retry %d; want %s and 590 s", d.Reset, d.RetryAfter(clk.Now()), want)
	}
	if d, _ := th.Begin("192.0.2.2", "someone"); !d.Allowed {
		t.Fatal("another IP was refused")
	}
	// The window frees exactly when the first request leaves it.
	clk.Set(first.Add(auth.DefaultWindow - time.Nanosecond))
	if d, _ := th.Begin("192.0.2.1", "x"); d.Allowed {
		t.Fatal("allowed before the window freed")
	}
	clk.Set(first.Add(auth.DefaultWindow))
	if d, _ := th.Begin("192.0.2.1", "x"); !d.Allowed {
		t.Fatal("refused after the window freed")
	}
	if d, _ := th.Begin("192.0.2.1", "x"); d.Allowed {
		t.Fatal("second slot freed early: the second request left only a second later")
	}
}

func TestThrottlePerLogin(t *testing.T) {
	th, clk := newThrottle(t)
	// Successful logins never lock their user out.
	for i := range 3 * auth.DefaultLoginLimit {
		d, att := th.Begin(fmt.Sprintf("198.51.100.%d", i), "Alice")
		if !d.Allowed {
			t.Fatalf("success %d refused", i+1)
		}
		att.Succeeded()
	}
	// Ten failures from ten addresses lock the login, whatever its case.
	for i := range auth.DefaultLoginLimit {
		if d, _ := th.Begin(fmt.Sprintf("203.0.113.%d", i), "alice"); !d.Allowed {
			t.Fatalf("failure %d refused", i+1)
		}
	}
	clk.Advance(time.Minute)
	d, _ := th.Begin("203.0.113.200", "ALICE")
	if d.Allowed || d.Remaining != 0 || d.RetryAfter(clk.Now()) != 540 {
		t.Fatalf("11th failure: %+v, retry %d", d, d.RetryAfter(clk.Now()))
	}
	if d, _ := th.Begin("203.0.113.200", "bob"); !d.Allowed {
		t.Fatal("another login was refused")
	}
	clk.Advance(9 * time.Minute)
	if d, _ := th.Begin("203.0.113.201", "alice"); !d.Allowed {
		t.Fatal("lock outlived its window")
	}
}

// A burst of parallel guesses must not slip past the limit while their
// password hashes run.
func TestThrottleParallelBurst(t *testing.T) {
	th, _ := newThrottle(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	admitted := 0
	for i := range 200 {
		wg.Go(func() {
			if d, _ := th.Begin(fmt.Sprintf("10.0.%d.%d", i/250, i%250), "target"); d.Allowed {
				mu.Lock()
				admitted++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if admitted != auth.DefaultLoginLimit {
		t.Fatalf("%d parallel guesses admitted, want %d", admitted, auth.DefaultLoginLimit)
	}
}

// A full window refuses new keys rather than dropping one that holds
// events: dropping it would hand its owner a fresh budget.
func TestWindowBound(t *testing.T) {
	clk := testkit.NewClock(time.Now())
	w := auth.NewWindow(10, time.Minute, 1000, clk.Now)
	for i := range 100_000 {
		w.Take(fmt.Sprintf("addr-%d", i%1000))
		if i == 1000 {
			clk.Advance(time.Second)
		}
	}
	if n := w.Len(); n != 1000 {
		t.Fatalf("window tracks %d keys after a flood, want its bound of 1000", n)
	}
	d := w.Take("newcomer")
	if d.Allowed || d.Kind != "full" || !d.First {
		t.Fatalf("a new key while full: %+v", d)
	}
	if d := w.Take("newcomer"); d.Allowed || d.First {
		t.Fatalf("second refusal: %+v", d)
	}
	if d := w.Take("addr-7"); d.Allowed || d.Kind != "ip" {
		t.Fatalf("a tracked key over its limit: %+v", d)
	}
	// A minute after their last events the keys leave, and the newcomer
	// gets a slot.
	clk.Advance(time.Minute)
	if d := w.Take("newcomer"); !d.Allowed || d.Remaining != 9 {
		t.Fatalf("after the window: %+v", d)
	}
	if n := w.Len(); n != 1 {
		t.Fatalf("tracks %d keys after the others expired, want 1", n)
	}
}

func TestThrottleKey(t *testing.T) {
	for _, tt := range []struct{ ip, key string }{
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2::ffff", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"::1", "::/64"},
		{"<nil>", "<nil>"},
	} {
		if got := auth.ThrottleKey(tt.ip); got != tt.key {
			t.Errorf("ThrottleKey(%q) = %q, want %q", tt.ip, got, tt.key)
		}
	}
}

// An IPv6 client cannot buy budget by changing the low 64 bits.
func TestThrottleIPv6Prefix(t *testing.T) {
	th, _ := newThrottle(t)
	for i := range auth.DefaultIPLimit {
		if d, _ := th.Begin(fmt.Sprintf("2001:db8:5:6::%x", i+1), ""); !d.Allowed {
			t.Fatalf("request %d refused", i+1)
		}
	}
	if d, _ := th.Begin("2001:db8:5:6:ffff::1", ""); d.Allowed {
		t.Fatal("a new address in the same /64 got a fresh budget")
	}
	if d, _ := th.Begin("2001:db8:5:7::1", ""); !d.Allowed {
		t.Fatal("the next /64 was refused")
	}
}

// users is a UserFinder over a fixed set of logins.
type users map[string]int64

func (u users) UserByLogin(login string) (*auth.User, error) {
	if id, ok := u[strings.ToLower(login)]; ok {
		return &auth.User{ID: id, Login: login}, nil
	}
	return nil, auth.ErrUserNotFound
}

// Locked logins, known or not, stay locked whatever other logins are
// named meanwhile, and answer alike.
func TestThrottleLockSurvivesFlood(t *testing.T) {
	clk := testkit.NewClock(time.Date(2026, 1, 10, 9, 0, 0, 0, time.UTC))
	th := auth.NewThrottle(auth.ThrottleConfig{IPLimit: 1000, MaxCounters: 100_000, Users: users{"alice": 1}, Now: clk.Now})
	lock := func(login string) {
		for i := range auth.DefaultLoginLimit {
			if d, _ := th.Begin("192.0.2.1", login); !d.Allowed {
				t.Fatalf("%s: failure %d refused", login, i+1)
			}
		}
	}
	lock("alice")
	lock("nobody")
	for i := range 50_000 {
		if d, _ := th.Begin(fmt.Sprintf("10.%d.%d.1", i/250%250, i%250), fmt.Sprintf("junk-%d", i)); !d.Allowed {
			t.Fatalf("junk %d refused: %+v", i, d)
		}
	}
	for _, login := range []string{"alice", "ALICE", "nobody", "NoBody"} {
		d, _ := th.Begin("192.0.2.200", login)
		if d.Allowed || d.Kind != "login" || !d.Reset.Equal(clk.Now().Add(auth.DefaultWindow)) {
			t.Errorf("%s after the flood: %+v", login, d)
		}
	}
}

// Refused requests are tallied: the first of a run is marked for the log,
// and the run is reported once, with its count, when the window ends.
func TestThrottleRefusalRuns(t *testing.T) {
	th, clk := newThrottle(t)
	for range auth.DefaultIPLimit {
		th.Begin("192.0.2.1", "")
	}
	for i := range 5 {
		d, _ := th.Begin("192.0.2.1", "someone")
		if d.Allowed || d.Kind != "ip" || d.First != (i == 0) {
			t.Fatalf("refusal %d: %+v", i+1, d)
		}
	}
	if r := th.Ended(); len(r) != 0 {
		t.Fatalf("runs ended while the lock holds: %+v", r)
	}
	clk.Advance(auth.DefaultWindow)
	th.Begin("192.0.2.2", "")
	r := th.Ended()
	if len(r) != 1 || r[0].Kind != "ip" || r[0].Label != "192.0.2.1" || r[0].Count != 5 {
		t.Fatalf("ended runs: %+v", r)
	}
}

// auditLog records what an Auditor writes.
type auditLog struct {
	mu      sync.Mutex
	entries []auth.AuditEntry
	max     int
}

func (l *auditLog) AppendAudit(e []auth.AuditEntry, maxEntries int, _ time.Duration, _ time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries, l.max = append(l.entries, e...), maxEntries
	return nil
}

func (l *auditLog) Audit(auth.AuditFilter) ([]auth.AuditEntry, error) { return nil, nil }

// Entries about throttling have a budget of their own on top of the
// trail's bound, so they never push checked attempts out.
func TestAuditorThrottledBudget(t *testing.T) {
	clk := testkit.NewClock(time.Date(2026, 1, 10, 9, 0, 0, 0, time.UTC))
	log := &auditLog{}
	a := auth.NewAuditor(log, 9000, 90*24*time.Hour, clk.Now, nil)
	defer a.Close()
	// A tenth of 9000 over 90 days: 10 a day.
	for i := range 15 {
		if got := a.RecordThrottled(auth.AuditEntry{Reason: "throttled"}); got != (i < 10) {
			t.Fatalf("throttled entry %d kept: %v", i+1, got)
		}
	}
	a.Record(auth.AuditEntry{Reason: "bad credentials"})
	clk.Advance(24 * time.Hour)
	if !a.RecordThrottled(auth.AuditEntry{Reason: "throttled"}) {
		t.Fatal("the budget did not renew the next day")
	}
	a.Flush()
	if len(log.entries) != 12 || log.max != 9000+900+10 {
		t.Fatalf("%d entries written with a bound of %d; want 12 and 9910", len(log.entries), log.max)
	}
}
