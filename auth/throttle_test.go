package auth_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"vmsauth/auth"
)

func newThrottle(t *testing.T) (*auth.Throttle, *clock) {
	t.Helper()
	clk := &clock{t: time.Date(2026, 1, 10, 9, 0, 0, 0, time.UTC)}
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
		clk.Add(time.Second)
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
	clk.t = first.Add(auth.DefaultWindow - time.Nanosecond)
	if d, _ := th.Begin("192.0.2.1", "x"); d.Allowed {
		t.Fatal("allowed before the window freed")
	}
	clk.t = first.Add(auth.DefaultWindow)
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
	clk.Add(time.Minute)
	d, _ := th.Begin("203.0.113.200", "ALICE")
	if d.Allowed || d.Remaining != 0 || d.RetryAfter(clk.Now()) != 540 {
		t.Fatalf("11th failure: %+v, retry %d", d, d.RetryAfter(clk.Now()))
	}
	if d, _ := th.Begin("203.0.113.200", "bob"); !d.Allowed {
		t.Fatal("another login was refused")
	}
	clk.Add(9 * time.Minute)
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

func TestWindowBound(t *testing.T) {
	clk := &clock{t: time.Now()}
	w := auth.NewWindow(10, time.Minute, 1000, clk.Now)
	for i := range 100_000 {
		w.Take(fmt.Sprintf("addr-%d", i))
	}
	if n := w.Len(); n != 1000 {
		t.Fatalf("window tracks %d keys after a flood, want its bound of 1000", n)
	}
	// A counter whose events all left the window is dropped when next seen.
	clk.Add(time.Minute)
	if d := w.Peek("addr-99999"); !d.Allowed || d.Remaining != 10 {
		t.Fatalf("expired counter: %+v", d)
	}
	if n := w.Len(); n != 999 {
		t.Fatalf("tracks %d keys after one expired, want 999", n)
	}
}
