package auth

import (
	"sync"
	"time"
)

// AuditEntry is one login attempt on any API. It never holds a password
// or a token: only who tried, from where, and how it went.
type AuditEntry struct {
	Time   time.Time `json:"time"`
	IP     string    `json:"ip"`
	Login  string    `json:"login"`
	API    API       `json:"api"`
	Result string    `json:"result"` // "ok" or "failed"
	Reason string    `json:"reason,omitempty"`
}

// AuditFilter selects entries, newest first.
type AuditFilter struct {
	Login string    // case-insensitive; "" for all
	Since time.Time // zero for all
	Limit int       // most entries returned; 0 for all
}

// AuditLog keeps the trail, bounded: Append drops the oldest entries beyond
// maxEntries and those older than maxAge.
type AuditLog interface {
	AppendAudit(entries []AuditEntry, maxEntries int, maxAge time.Duration, now time.Time) error
	Audit(f AuditFilter) ([]AuditEntry, error)
}

// Audit bounds by default: enough for months of a busy box, a few MB.
const (
	DefaultAuditEntries = 100000
	DefaultAuditAge     = 90 * 24 * time.Hour
)

// Auditor batches audit entries and writes them about once a second, so a
// login costs one disk sync for its session, not a second one for its
// audit line. Entries still in memory at a crash are lost; sessions are
// not.
type Auditor struct {
	log        AuditLog
	maxEntries int
	maxAge     time.Duration
	now        func() time.Time
	onError    func(error)

	// Entries about throttled requests have a budget of their own, so
	// that no flood of them can push the attempts that were checked out
	// of the trail (see RecordThrottled).
	reserve   int           // throttled entries the trail holds beyond maxEntries
	period    time.Duration // the budget renews every period...
	perPeriod int           // ...with this many entries

	mu       sync.Mutex
	pending  []AuditEntry
	spent    int       // throttled entries recorded in this period
	periodAt time.Time // when this period began
	kick     chan struct{}
	done     chan struct{}
	stopped  chan struct{}
}

// maxPending bounds memory if the disk stalls: a flood of failed logins
// must not grow the buffer without limit.
const maxPending = 10000

// NewAuditor starts an Auditor writing to log; Close flushes and stops it.
func NewAuditor(log AuditLog, maxEntries int, maxAge time.Duration, now func() time.Time, onError func(error)) *Auditor {
	if maxEntries <= 0 {
		maxEntries = DefaultAuditEntries
	}
	if maxAge <= 0 {
		maxAge = DefaultAuditAge
	}
	if now == nil {
		now = time.Now
	}
	if onError == nil {
		onError = func(error) {}
	}
	a := &Auditor{log: log, maxEntries: maxEntries, maxAge: maxAge, now: now, onError: onError,
		kick: make(chan struct{}, 1), done: make(chan struct{}), stopped: make(chan struct{})}
	// A tenth more room for throttled entries, spread over the trail's
	// age: at most reserve+perPeriod of them can be in it at once.
	a.reserve = max(10, maxEntries/10)
	a.period = min(24*time.Hour, maxAge)
	a.perPeriod = max(1, int(int64(a.reserve)*int64(a.period)/int64(maxAge)))
	go a.loop()
	return a
}

// Record queues an entry; it never blocks on the disk.
func (a *Auditor) Record(e AuditEntry) {
	if e.Time.IsZero() {
		e.Time = a.now()
	}
	a.mu.Lock()
	if len(a.pending) < maxPending {
		a.pending = append(a.pending, e)
	}
	full := len(a.pending) >= 100
	a.mu.Unlock()
	if full {
		select {
		case a.kick <- struct{}{}:
		default:
		}
	}
}

// RecordThrottled queues an entry about throttled requests within their
// budget, perPeriod entries a period, and reports whether it was kept. The
// trail's bound grows by that budget, so those entries never push out an
// attempt that was checked.
func (a *Auditor) RecordThrottled(e AuditEntry) bool {
	now := a.now()
	a.mu.Lock()
	if now.Sub(a.periodAt) >= a.period || now.Before(a.periodAt) {
		a.periodAt, a.spent = now, 0
	}
	ok := a.spent < a.perPeriod
	if ok {
		a.spent++
	}
	a.mu.Unlock()
	if ok {
		a.Record(e)
	}
	return ok
}

// Flush writes what is queued now.
func (a *Auditor) Flush() {
	a.mu.Lock()
	batch := a.pending
	a.pending = nil
	a.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	if err := a.log.AppendAudit(batch, a.maxEntries+a.reserve+a.perPeriod, a.maxAge, a.now()); err != nil {
		a.onError(err)
	}
}

// loop writes until Close. A panic stops it (entries then wait in memory,
// bounded, until Close) and goes to onError as a *PanicError, for the owner
// to stop the service: a dead writer must not take the process down
// silently, nor leave it running without a trail.
func (a *Auditor) loop() {
	defer close(a.stopped)
	defer func() {
		if v := recover(); v != nil {
			a.onError(Recovered(v))
		}
	}()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-a.kick:
		case <-a.done:
			a.Flush()
			return
		}
		a.Flush()
	}
}

// Query flushes what is queued, so the answer includes the latest
// attempts, and reads the trail.
func (a *Auditor) Query(f AuditFilter) ([]AuditEntry, error) {
	a.Flush()
	return a.log.Audit(f)
}

// Close flushes the queue and stops the writer.
func (a *Auditor) Close() {
	close(a.done)
	<-a.stopped
}
