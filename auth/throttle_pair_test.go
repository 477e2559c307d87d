package auth_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"vmsauth/auth"
	"vmsauth/internal/testkit"
)

// memPairs is memCounters that also counts two keys in one step
// (auth.SharedPairs), as etcdstore.Shared does; a pair is one call.
type memPairs struct{ *memCounters }

func (m memPairs) UpdatePair(_ context.Context, keys [2]string, _ time.Duration, fn func([2][]int64) ([2][]int64, [2]bool)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.down {
		return errOut
	}
	next, write := fn([2][]int64{append([]int64(nil), m.keys[keys[0]]...), append([]int64(nil), m.keys[keys[1]]...)})
	for i, key := range keys {
		if write[i] {
			m.keys[key] = next[i]
			m.writes[strings.SplitN(key, "/", 2)[0]]++
		}
	}
	return nil
}

func pairSiteOfTwo(clk *testkit.Clock) (memPairs, [2]*auth.Throttle) {
	m := memPairs{&memCounters{keys: map[string][]int64{}, writes: map[string]int{}}}
	var boxes [2]*auth.Throttle
	for i := range boxes {
		boxes[i] = auth.NewThrottle(auth.ThrottleConfig{Now: clk.Now, Shared: m, HashKey: []byte("site")})
	}
	return m, boxes
}

// On a backend that counts an attempt's client key and login in one step,
// the site's rules are those of TestSharedThrottle: failures of a login
// and requests of a client add up over the boxes, a success is taken back
// site-wide, each box reports its first refusal of a lock; an attempt
// costs the site one step, and a take-back another.
func TestSharedThrottlePairs(t *testing.T) {
	clk := testkit.NewClock(time.Date(2026, 1, 10, 9, 0, 0, 0, time.UTC))
	m, boxes := pairSiteOfTwo(clk)
	ctx := t.Context()

	calls, _, _ := m.count()
	d, att := boxes[0].Begin(ctx, "192.0.2.200", "Alice")
	if !d.Allowed {
		t.Fatal(d)
	}
	att.Succeeded()
	if c, _, _ := m.count(); c-calls != 2 {
		t.Fatalf("a successful attempt cost the site %d calls, want 2 (count both keys, take back)", c-calls)
	}
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
	// A refusal by login still counts its client key, and writes no
	// login.
	if got := m.keys["ip/"+auth.ThrottleKey("198.51.100.1")]; len(got) != 2 {
		t.Fatalf("the client refused by login on both boxes holds %d events, want 2", len(got))
	}
	_, _, lw := m.count()
	for i := range 20 {
		if d, _ := boxes[i%2].Begin(ctx, fmt.Sprintf("198.51.100.%d", 2+i), "alice"); d.Allowed || d.First {
			t.Fatalf("refusal %d: %+v", i, d)
		}
	}
	if _, _, lw2 := m.count(); lw2 != lw {
		t.Fatalf("refusals of a locked login wrote its counter %d times", lw2-lw)
	}

	// A client's requests add up over the boxes; once refused on a box,
	// it costs the site nothing more there.
	for i := range 10 {
		if d, _ := boxes[i%2].Begin(ctx, "203.0.113.7", fmt.Sprintf("user%d", i)); !d.Allowed {
			t.Fatalf("request %d refused: %+v", i+1, d)
		}
	}
	_, _, lw = m.count()
	for _, box := range boxes {
		if d, _ := box.Begin(ctx, "203.0.113.7", "bob"); d.Allowed || d.Kind != "ip" {
			t.Fatalf("11th request of one client: %+v", d)
		}
	}
	if _, _, lw2 := m.count(); lw2 != lw {
		t.Fatal("a request refused by its client counted its login")
	}
	before, _, _ := m.count()
	for _, box := range boxes {
		box.Begin(ctx, "203.0.113.7", "bob")
	}
	if after, _, _ := m.count(); after != before {
		t.Fatal("a client refused on both boxes still reached the site")
	}

	// Ten logins of one account at once fill its count; their successes
	// on box 0 let box 1 in again.
	var inFlight []*auth.Attempt
	for i := range 10 {
		d, att := boxes[0].Begin(ctx, fmt.Sprintf("192.0.2.%d", 50+i), "viewer")
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

	// Out of reach, the site refuses, and the box's reservation of the
	// client key is given back.
	m.down = true
	for range 20 {
		if d, att := boxes[0].Begin(ctx, "192.0.2.9", "carol"); d.Allowed || att != nil || !errors.Is(d.Err, auth.ErrUnavailable) {
			t.Fatalf("with the site's counters out: %+v %v", d, att)
		}
	}
	m.down = false
	if d, _ := boxes[0].Begin(ctx, "192.0.2.9", "carol"); !d.Allowed {
		t.Fatalf("after the outage: %+v; the refused requests were counted", d)
	}
}
