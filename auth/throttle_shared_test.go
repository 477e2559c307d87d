package auth_test

import (
	"context"
	"errors"
	"fmt"
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
	mu    sync.Mutex
	keys  map[string][]int64
	calls int
	down  bool
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
	}
	return nil
}

func (m *memCounters) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls
}

// siteOfTwo is two boxes' throttles on one set of shared counters.
func siteOfTwo(clk *testkit.Clock) (*memCounters, [2]*auth.Throttle) {
	m := &memCounters{keys: map[string][]int64{}}
	var boxes [2]*auth.Throttle
	for i := range boxes {
		boxes[i] = auth.NewThrottle(auth.ThrottleConfig{Now: clk.Now, Shared: m, HashKey: []byte("site")})
	}
	return m, boxes
}

// The limits are the site's: failures of a login and requests of a client
// add up over the boxes; a success takes its attempt back on the site; a
// lock the box has seen costs the site nothing more; each box reports its
// own first refusal of a lock once.
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
	// Both boxes now know the lock: more refusals ask the site nothing,
	// and are not reported as first again.
	before := m.count()
	for i := range 20 {
		d, _ := boxes[i%2].Begin(ctx, fmt.Sprintf("198.51.100.%d", 2+i), "alice")
		if d.Allowed || d.First {
			t.Fatalf("refusal %d: %+v", i, d)
		}
	}
	// Each of those counted its client key (one call), never the login.
	if got := m.count() - before; got != 20 {
		t.Fatalf("20 refusals of a known lock made %d calls to the site, want 20 (their client keys)", got)
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
	before = m.count()
	for _, box := range boxes {
		box.Begin(ctx, "203.0.113.7", "bob")
	}
	if m.count() != before {
		t.Fatal("a client refused on both boxes still reached the site")
	}

	// The window frees on the site's clock as on one box.
	clk.Advance(auth.DefaultWindow)
	if d, _ := boxes[1].Begin(ctx, "198.51.100.100", "alice"); !d.Allowed {
		t.Fatalf("after the window: %+v", d)
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
