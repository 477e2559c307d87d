// Package testkit holds the test doubles that the tests of several
// packages share: a clock that tests move by hand, so that expiry and
// throttle windows pass without sleeping, and a log buffer that server
// goroutines write while the test reads. Only tests import it; it imports
// nothing of ours, so any package's tests may.
package testkit

import (
	"bytes"
	"sync"
	"time"
)

// Clock is a time source that moves only when told; pass its Now where a
// package takes a clock. It is safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock standing at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Set puts the clock at t, for a test that needs an exact instant.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// LogBuffer collects what a server writes to its log (an io.Writer) while
// the test reads it: a bytes.Buffer alone would race.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
