package etcdstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"vmsauth/etcd"
)

// What the boxes of a site share besides the records of auth.Store: the
// login throttle's counters (throttle.go), the captcha keys already used
// and the session-limit graces (captcha.go), and the site's secrets. Keys,
// under the prefix:
//
//	t/ip/<client key>    event times of a client key (8 bytes each, big-endian Unix ns)
//	t/login/<login key>  event times of a login: "u<id>" or "n<keyed hash>"
//	c/<hex nonce>        a captcha key already used
//	g/<hex sha-256>      a session-limit grace: the login it was given to
//	secret/<name>        a secret of the site, made once by whichever box came first
//
// Every t/, c/ and g/ key is written with a lease that outlives what it
// must remember, so idle keys vanish on their own. The leases are shared:
// one is granted when none held lasts long enough, and serves every write
// until it no longer does (see lease), so a burst of logins costs no lease
// per request and the site holds a handful at a time.

// Shared is the site's shared throttle, captcha and secret keys on a
// Store. It is safe for concurrent use.
type Shared struct {
	s *Store

	mu          sync.Mutex
	leaseID     int64
	leaseEnd    time.Time     // when leaseID ends at the earliest, by this box's clock
	granting    chan struct{} // closed when the grant under way ends; nil if none
	grantErr    error         // the last grant's failure, returned until grantErrEnd
	grantErrEnd time.Time

	cmu      sync.Mutex
	counters map[string]counter // what this box last wrote to throttle keys (see Update)
}

// NewShared returns the shared keys of the site s serves.
func NewShared(s *Store) *Shared { return &Shared{s: s} }

// minLeaseSlack is the least a lease outlives the first write it serves:
// a lease is reused while it still lasts as long as a write needs, so its
// slack is how often a busy box grants one.
const minLeaseSlack = 30 * time.Second

// grantTimeout bounds a grant, which waits for no request's end.
const grantTimeout = 3 * time.Second

// grantErrFor is how long a failed grant is the answer of the writes that
// need a lease: while etcd does not answer, they fail at once rather than
// queue for a grant each.
const grantErrFor = time.Second

// lease returns a lease that lasts at least until until. The one held is
// reused while it does; a new one lasts a quarter longer than needed (at
// least minLeaseSlack), so a box grants one about every quarter of the
// throttle's window, and keys live at most that much longer than they
// must. One grant runs at a time; the writes that need it wait for it.
func (sh *Shared) lease(ctx context.Context, until time.Time) (int64, error) {
	for {
		sh.mu.Lock()
		switch {
		case sh.leaseID != 0 && !sh.leaseEnd.Before(until):
			id := sh.leaseID
			sh.mu.Unlock()
			return id, nil
		case sh.grantErr != nil && time.Now().Before(sh.grantErrEnd):
			err := sh.grantErr
			sh.mu.Unlock()
			return 0, err
		case sh.granting != nil:
			wait := sh.granting
			sh.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		done := make(chan struct{})
		sh.granting = done
		sh.mu.Unlock()

		id, end, err := sh.grant(ctx, until)
		sh.mu.Lock()
		sh.granting = nil
		if err == nil {
			sh.leaseID, sh.leaseEnd, sh.grantErr = id, end, nil
		} else {
			sh.grantErr, sh.grantErrEnd = err, time.Now().Add(grantErrFor)
		}
		sh.mu.Unlock()
		close(done)
		return id, err
	}
}

// grant asks etcd for a lease lasting until until and a quarter more.
func (sh *Shared) grant(ctx context.Context, until time.Time) (int64, time.Time, error) {
	if sh.s.closed.Load() {
		return 0, time.Time{}, ErrClosed
	}
	start := time.Now()
	need := until.Sub(start)
	ttl := need + max(need/4, minLeaseSlack)
	// Other writes wait for this grant: it must not end with the request
	// that happened to start it (a client that left).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grantTimeout)
	defer cancel()
	l, err := sh.s.c.Grant(ctx, int64((ttl+time.Second-1)/time.Second))
	if err != nil {
		return 0, time.Time{}, unavailable(err)
	}
	// etcd counts the TTL from when it granted, after start: ending it at
	// start+TTL errs on the short side, which only grants sooner.
	return l.ID, start.Add(time.Duration(l.TTL) * time.Second), nil
}

// leaseGone forgets a lease etcd no longer has (revoked, or the cluster
// restored from a snapshot), so the next write grants another.
func (sh *Shared) leaseGone(id int64) {
	sh.mu.Lock()
	if sh.leaseID == id {
		sh.leaseID = 0
	}
	sh.mu.Unlock()
}

// putLeased writes key with a shared lease lasting until until, when the
// compares hold (else runs failure); a lease that vanished is replaced once.
func (sh *Shared) putLeased(ctx context.Context, cmp []etcd.Compare, failure []etcd.Op, key, value []byte, until time.Time) (*etcd.TxnResponse, error) {
	for try := 0; ; try++ {
		id, err := sh.lease(ctx, until)
		if err != nil {
			return nil, err
		}
		resp, err := sh.s.txn(ctx, etcd.TxnRequest{Compare: cmp, Failure: failure,
			Success: []etcd.Op{{Put: &etcd.PutRequest{Key: key, Value: value, Lease: id}}}})
		if errors.Is(err, etcd.ErrLeaseNotFound) && try == 0 {
			sh.leaseGone(id)
			continue
		}
		return resp, err
	}
}

// Secret returns the site's secret called name, of size random bytes,
// making it if the site has none yet: a create-if-absent Txn, so the boxes
// that start at once all end up with the one that was written first.
func (sh *Shared) Secret(ctx context.Context, name string, size int) ([]byte, error) {
	key := sh.s.key("secret/", name)
	lost := 0
	for try := 0; try < maxTries; try++ {
		fresh := make([]byte, size)
		if _, err := rand.Read(fresh); err != nil {
			return nil, err
		}
		resp, err := sh.s.txn(ctx, etcd.TxnRequest{
			Compare: []etcd.Compare{etcd.CompareVersion(key, etcd.Equal, 0)},
			Success: []etcd.Op{put(key, fresh)},
			Failure: []etcd.Op{{Range: &etcd.RangeRequest{Key: key}}},
		})
		if errors.Is(err, etcd.ErrMaybeApplied) && lost < maxLost {
			lost++
			continue // safe: the next try reads what was written, if it was
		}
		if err != nil {
			return nil, fmt.Errorf("the site's %s: %w", name, err)
		}
		if resp.Succeeded {
			return fresh, nil
		}
		if len(resp.Responses) == 1 && resp.Responses[0].Range != nil && len(resp.Responses[0].Range.KVs) == 1 {
			v := resp.Responses[0].Range.KVs[0].Value
			if len(v) != size {
				return nil, fmt.Errorf("the site's %s (%s) is damaged: %d bytes, want %d", name, key, len(v), size)
			}
			return v, nil
		}
		// Deleted between the compare and the read: make it again.
	}
	return nil, ErrContention
}
