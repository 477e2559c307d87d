package auth

import "testing"

// A high limit must not let the counters grow past their memory budget:
// the key bound shrinks as the limit grows.
func TestThrottleMemoryBudget(t *testing.T) {
	for _, tt := range []struct{ limit, keys int }{
		{10, DefaultMaxCounters},
		{1000, 200},
		{100000, 100},
	} {
		th := NewThrottle(ThrottleConfig{IPLimit: tt.limit, LoginLimit: tt.limit})
		if th.ip.max != tt.keys || th.login.max != 0 {
			t.Errorf("limit %d: %d and %d keys, want %d and none", tt.limit, th.ip.max, th.login.max, tt.keys)
		}
		th.ip.Take("192.0.2.1")
		if c := cap(th.ip.keys["192.0.2.1"].hits); c > 16 {
			t.Errorf("limit %d: a new counter reserves room for %d events", tt.limit, c)
		}
	}
}
