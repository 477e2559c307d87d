package auth_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"vmsauth/auth"
	"vmsauth/internal/testkit"
)

// memCounters is auth.SharedCounters in memory, for the rule's tests (the
// etcd one is tested in etcdstore): it counts the calls, which go to etcd
// on a site, and can be made to fail as etcd without a majority does.
type memCounters struct {
	mu     sync.Mutex
	keys   map[string][]int64
	calls  int
	writes map[string]int // by key
	down   bool
}

var errOut = fmt.Errorf("%w: no majority", auth.ErrUnavailable)

func (m *memCounters) Update(_ context.Context, key string, _ time.Duration, fn func([]int64) ([]int64, bool)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.down {
		return errOut
	}
	if next, write := fn(append([]int64(nil), m.keys[key]...)); write {
		m.keys[key] = next
		m.writes[strings.SplitN(key, "/", 2)[0]]++
	}
	return nil
}

// count returns the calls so far and the writes of ip/ and login/ keys.
func (m *memCounters) count() (calls, ipWrites, loginWrites int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls, m.writes["ip"], m.writes["login"]
}

// siteOfTwo is two boxes' throttles on one set of shared counters.
func siteOfTwo(clk *testkit.Clock) (*memCounters, [2]*auth.Throttle) {
	m := &memCounters{keys: map[string][]int64{}, writes: map[string]int{}}
	var boxes [2]*auth.Throttle
	for i := range boxes {
		boxes[i] = auth.NewThrottle(auth.ThrottleConfig{Now: clk.Now, Shared: m, HashKey: []byte("site")})
	}
	return m, boxes
}

// The limits are the site's: failures of a login and requests of a client
// add up over the boxes; a success takes its attempt back on the site; a
// client the box has seen refused costs the site nothing more, and a
// refused login costs it a read; each box reports its own first refusal
// of a lock once.
func TestSharedThrottle(t *testing.T) {
	clk := testkit.NewClock(time.Date(2026, 1, 10, 9, 0, 0, 0, time.UTC))
	m, boxes := siteOfTwo(clk)
	ctx := t.Context()

	// A success on box 0 is taken back site-wide: it never counts.
	d, att := boxes[0].Begin(ctx, "192.0.2.200", "Alice")
	if !d.Allowed {
		t.Fatal(d)
	}
	att.Succeeded()
	for i := range 10 {
		if d, _ := boxes[i%2].Begin(ctx, fmt.Sprintf("192.0.2.%d", i), "alice"); !d.Allowed {
			t.Fatalf("failure %d refused: %+v", i+1, d)
		}
	}
	for i, box := range boxes {
		d, _ := box.Begin(ctx, "198.51.100.1", "ALICE")
		if d.Allowed || d.Kind != "login" || !d.First {
			t.Fatalf("box %d after 10 failures over the site: %+v, want its own first refusal by login", i, d)
		}
	}
	// More refusals are not reported as first again. Each counts its
	// client key (a write) and reads the login's count (no write).
	calls, ipw, lw := m.count()
	for i := range 20 {
		d, _ := boxes[i%2].Begin(ctx, fmt.Sprintf("198.51.100.%d", 2+i), "alice")
		if d.Allowed || d.First {
			t.Fatalf("refusal %d: %+v", i, d)
		}
	}
	calls2, ipw2, lw2 := m.count()
	if calls2-calls != 40 || ipw2-ipw != 20 || lw2 != lw {
		t.Fatalf("20 refusals of a lock: %d calls, %d writes of client keys, %d of the login; want 40, 20, 0",
			calls2-calls, ipw2-ipw, lw2-lw)
	}

	// A client's requests add up over the boxes too; once refused, it
	// costs the site nothing.
	for i := range 10 {
		if d, _ := boxes[i%2].Begin(ctx, "203.0.113.7", fmt.Sprintf("user%d", i)); !d.Allowed {
			t.Fatalf("request %d refused: %+v", i+1, d)
		}
	}
	for _, box := range boxes {
		if d, _ := box.Begin(ctx, "203.0.113.7", "bob"); d.Allowed || d.Kind != "ip" {
			t.Fatalf("11th request of one client: %+v", d)
		}
	}
	before, _, _ := m.count()
	for _, box := range boxes {
		box.Begin(ctx, "203.0.113.7", "bob")
	}
	if after, _, _ := m.count(); after != before {
		t.Fatal("a client refused on both boxes still reached the site")
	}

	// The window frees on the site's clock as on one box; the lock's run
	// of refusals is reported as over, and a new lock is a new run.
	clk.Advance(auth.DefaultWindow)
	for i := range 10 {
		if d, _ := boxes[1].Begin(ctx, fmt.Sprintf("198.51.100.%d", 100+i), "alice"); !d.Allowed {
			t.Fatalf("failure %d after the window: %+v", i+1, d)
		}
	}
	var logins []auth.Refusal
	for _, r := range boxes[1].Ended() {
		if r.Kind == "login" {
			logins = append(logins, r)
		}
	}
	if len(logins) != 1 || logins[0].Count != 11 {
		t.Fatalf("box 1's runs of login refusals ended: %+v, want its one run of 11 refusals of alice", logins)
	}
	if d, _ := boxes[1].Begin(ctx, "198.51.100.200", "alice"); d.Allowed || !d.First {
		t.Fatalf("a new lock on box 1: %+v, want its first refusal", d)
	}
}

// Without the site's counters a login is refused with the cause, never let
// through uncounted.
func TestSharedThrottleFailsClosed(t *testing.T) {
	clk := testkit.NewClock(time.Date(2026, 1, 10, 9, 0, 0, 0, time.UTC))
	m, boxes := siteOfTwo(clk)
	m.down = true
	for _, login := range []string{"alice", ""} {
		d, att := boxes[0].Begin(t.Context(), "192.0.2.1", login)
		if d.Allowed || att != nil || !errors.Is(d.Err, auth.ErrUnavailable) {
			t.Fatalf("login %q with the site's counters out: %+v %v", login, d, att)
		}
	}
}

// Ten logins of one shared account at once fill its count while they hash;
// once they succeed, the other box lets the account in again at once: a
// box does not keep a login's lock it learnt from the site, since other
// boxes take attempts back.
func TestSharedThrottleTakenBackElsewhere(t *testing.T) {
	clk := testkit.NewClock(time.Date(2026, 1, 10, 9, 0, 0, 0, time.UTC))
	_, boxes := siteOfTwo(clk)
	ctx := t.Context()
	var inFlight []*auth.Attempt
	for i := range 10 {
		d, att := boxes[0].Begin(ctx, fmt.Sprintf("192.0.2.%d", i), "viewer")
		if !d.Allowed {
			t.Fatalf("login %d: %+v", i+1, d)
		}
		inFlight = append(inFlight, att)
	}
	if d, _ := boxes[1].Begin(ctx, "192.0.2.100", "viewer"); d.Allowed || d.Kind != "login" {
		t.Fatalf("an 11th login while 10 hash: %+v, want refused by login", d)
	}
	for _, att := range inFlight {
		att.Succeeded()
	}
	if d, _ := boxes[1].Begin(ctx, "192.0.2.101", "viewer"); !d.Allowed {
		t.Fatalf("box 1 after the 10 logins succeeded on box 0: %+v, want allowed", d)
	}
}
