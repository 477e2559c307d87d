package etcdstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"vmsauth/auth"
	"vmsauth/etcd"
)

var (
	_ auth.SharedCounters = (*Shared)(nil)
	_ auth.SharedPairs    = (*Shared)(nil)
)

// Update is auth.SharedCounters on etcd: a compare-and-swap of t/<key>,
// tried again when another box wrote the key in between. A write carries a
// shared lease lasting at least keep, so a key nobody counts in any more
// is gone a little after its events have left the window. The number of
// keys is bounded by what each box lets through: a box asks only for the
// client keys its own Window admitted (at most its MaxCounters at once),
// and each login key came with one of them.
//
// A login costs etcd two swaps (its client key and login together, see
// UpdatePair, then the take-back of a success), on keys this box wrote
// last almost always: a client logs in on one box. So a swap is tried
// first on what this box last knew of its keys (what it wrote, or that a
// key is absent), without reading them: the compares on their mod
// revisions make a stale guess fail rather than count wrongly, and the
// failed Txn returns the keys as they are, which the next try starts from.
// A right guess costs one round trip instead of a read and a write; a
// wrong one costs the same two as a read first. Only a refusal or nothing
// to do (fn asks for no write) is never taken from a guess: the keys are
// read again and judged on what etcd holds.
func (sh *Shared) Update(ctx context.Context, key string, keep time.Duration, fn func([]int64) ([]int64, bool)) error {
	return sh.update(ctx, []string{key}, keep, func(hits [][]int64) ([][]int64, []bool) {
		next, write := fn(hits[0])
		return [][]int64{next}, []bool{write}
	})
}

// UpdatePair is auth.SharedPairs on etcd: Update of two keys in one Txn
// that compares and writes both.
func (sh *Shared) UpdatePair(ctx context.Context, keys [2]string, keep time.Duration, fn func([2][]int64) ([2][]int64, [2]bool)) error {
	return sh.update(ctx, keys[:], keep, func(hits [][]int64) ([][]int64, []bool) {
		next, write := fn([2][]int64{hits[0], hits[1]})
		return next[:], write[:]
	})
}

// update is Update of one or more distinct keys.
func (sh *Shared) update(ctx context.Context, keys []string, keep time.Duration, fn func([][]int64) ([][]int64, []bool)) error {
	ks := make([][]byte, len(keys))
	cur := make([]counter, len(keys))
	for i, key := range keys {
		ks[i], cur[i] = sh.s.key("t/", key), sh.known(key)
	}
	forget := func() {
		for _, key := range keys {
			sh.forget(key)
		}
	}
	hits := make([][]int64, len(keys))
	fresh := false    // cur is what etcd answered within this call
	collided := false // the last Txn lost to another box's write
	for try := 0; try < maxTries; try++ {
		if collided {
			// Spread the retries of boxes that collided.
			d := time.Duration(rand.Int64N(int64(time.Millisecond) * int64(min(try, 10))))
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(d):
			}
		}
		for i := range cur {
			hits[i] = cur[i].hits
		}
		next, write := fn(hits)
		var cmp []etcd.Compare
		var ops []etcd.Op
		var failure []etcd.Op
		for i, k := range ks {
			// Every key is compared, written or not: fn judged them
			// all on what it was given.
			if cur[i].rev == 0 {
				cmp = append(cmp, etcd.CompareVersion(k, etcd.Equal, 0))
			} else {
				cmp = append(cmp, etcd.CompareModRevision(k, etcd.Equal, cur[i].rev))
			}
			// When a compare fails, the keys as they are now, to try
			// again on.
			failure = append(failure, etcd.Op{Range: &etcd.RangeRequest{Key: k}})
			switch {
			case !write[i] || len(next[i]) == 0 && cur[i].rev == 0:
			case len(next[i]) == 0:
				ops = append(ops, del(k))
			default:
				ops = append(ops, etcd.Op{Put: &etcd.PutRequest{Key: k, Value: encodeHits(next[i])}})
			}
		}
		if len(ops) == 0 {
			if fresh {
				return nil
			}
			// A guess: read before refusing or doing nothing.
			resp, err := sh.s.txn(ctx, etcd.TxnRequest{Success: failure})
			if err != nil {
				forget()
				return err
			}
			if err := countersOf(ks, resp, cur); err != nil {
				forget()
				return err
			}
			fresh, collided = true, false
			continue
		}
		resp, err := sh.leasedTxn(ctx, cmp, ops, failure, time.Now().Add(keep))
		// A lost answer is not tried again: fn's count may have gone
		// through, and a second run would count it twice. The request is
		// refused as during an outage.
		if err != nil {
			forget()
			return err
		}
		if resp.Succeeded {
			for i, key := range keys {
				if write[i] {
					if len(next[i]) == 0 {
						sh.remember(key, counter{})
					} else {
						sh.remember(key, counter{rev: resp.Header.Revision, hits: next[i]})
					}
				}
			}
			return nil
		}
		if err := countersOf(ks, resp, cur); err != nil {
			forget()
			return err
		}
		// Against a guess, not a collision: only this box's knowledge
		// was old.
		collided = fresh
		fresh = true
	}
	forget()
	return ErrContention
}

// leasedTxn runs ops when the compares hold, else failure; the puts in ops
// carry a shared lease lasting until until, and a lease that vanished is
// replaced once.
func (sh *Shared) leasedTxn(ctx context.Context, cmp []etcd.Compare, ops, failure []etcd.Op, until time.Time) (*etcd.TxnResponse, error) {
	puts := false
	for _, op := range ops {
		puts = puts || op.Put != nil
	}
	for try := 0; ; try++ {
		var id int64
		if puts {
			var err error
			if id, err = sh.lease(ctx, until); err != nil {
				return nil, err
			}
			for _, op := range ops {
				if op.Put != nil {
					op.Put.Lease = id
				}
			}
		}
		resp, err := sh.s.txn(ctx, etcd.TxnRequest{Compare: cmp, Success: ops, Failure: failure})
		if errors.Is(err, etcd.ErrLeaseNotFound) && try == 0 {
			sh.leaseGone(id)
			continue
		}
		return resp, err
	}
}

// counter is what a box knows of a shared counter: its mod revision (0
// when absent) and its event times.
type counter struct {
	rev  int64
	hits []int64
}

// countersOf sets cur to the keys ks as resp's ranges (one per key, in
// order) read them.
func countersOf(ks [][]byte, resp *etcd.TxnResponse, cur []counter) error {
	if len(resp.Responses) != len(ks) {
		return fmt.Errorf("throttle counters: %d ranges answered for %d keys", len(resp.Responses), len(ks))
	}
	for i, k := range ks {
		r := resp.Responses[i].Range
		if r == nil {
			return fmt.Errorf("throttle counter %s: no range answered", k)
		}
		if len(r.KVs) == 0 {
			cur[i] = counter{}
			continue
		}
		hits, err := decodeHits(r.KVs[0].Value)
		if err != nil {
			return fmt.Errorf("throttle counter %s: %w", k, err)
		}
		cur[i] = counter{rev: r.KVs[0].ModRevision, hits: hits}
	}
	return nil
}

// maxKnown bounds the counters a box remembers it wrote. A counter it
// forgot is guessed absent: a wrong guess costs only the read it saves.
const maxKnown = 4096

// known returns what this box last wrote to key; a key it does not
// remember is guessed absent.
func (sh *Shared) known(key string) counter {
	sh.cmu.Lock()
	defer sh.cmu.Unlock()
	return sh.counters[key]
}

// remember keeps c as what this box last wrote to key. The hits are the
// caller's own: fn returned them and keeps no reference (it builds a new
// list each time).
func (sh *Shared) remember(key string, c counter) {
	sh.cmu.Lock()
	defer sh.cmu.Unlock()
	if sh.counters == nil {
		sh.counters = make(map[string]counter)
	}
	if _, ok := sh.counters[key]; !ok && len(sh.counters) >= maxKnown {
		for k := range sh.counters { // any one: a forgotten key costs a read
			delete(sh.counters, k)
			break
		}
	}
	sh.counters[key] = c
}

func (sh *Shared) forget(key string) {
	sh.cmu.Lock()
	delete(sh.counters, key)
	sh.cmu.Unlock()
}

func encodeHits(hits []int64) []byte {
	b := make([]byte, 0, 8*len(hits))
	for _, h := range hits {
		b = binary.BigEndian.AppendUint64(b, uint64(h))
	}
	return b
}

func decodeHits(b []byte) ([]int64, error) {
	if len(b)%8 != 0 {
		return nil, errors.New("damaged: length not a multiple of 8")
	}
	hits := make([]int64, len(b)/8)
	for i := range hits {
		hits[i] = int64(binary.BigEndian.Uint64(b[8*i:]))
	}
	return hits, nil
}
