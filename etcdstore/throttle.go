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

var _ auth.SharedCounters = (*Shared)(nil)

// Update is auth.SharedCounters on etcd: a compare-and-swap of t/<key>,
// tried again when another box wrote the key in between. A write carries a
// shared lease lasting at least keep, so a key nobody counts in any more
// is gone a little after its events have left the window. The number of
// keys is bounded by what each box lets through: a box asks only for the
// client keys its own Window admitted (at most its MaxCounters at once),
// and each login key came with one of them.
//
// A login costs three Updates (its client key, its login, and the take-back
// of a success), on the same two keys this box wrote last almost always: a
// client logs in on one box. So the swap is tried first on what this box
// last knew of the key (what it wrote, or that it is absent), without
// reading it: the compare on its mod revision makes a stale guess fail
// rather than count wrongly, and the failed Txn returns the key as it is,
// which the next try starts from. A right guess costs one round trip
// instead of a read and a write; a wrong one costs the same two as a read
// first. Only a refusal (fn asks for no write) is never taken from a
// guess: it is read again and judged on what etcd holds.
func (sh *Shared) Update(ctx context.Context, key string, keep time.Duration, fn func([]int64) ([]int64, bool)) error {
	k := sh.s.key("t/", key)
	cur := sh.known(key)
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
		next, write := fn(cur.hits)
		if !write || len(next) == 0 && cur.rev == 0 {
			if fresh {
				return nil
			}
			// A guess: read before refusing or doing nothing.
			kv, _, err := sh.s.get(ctx, k, 0)
			if err != nil {
				sh.forget(key)
				return err
			}
			if cur, err = counterOf(k, kv); err != nil {
				sh.forget(key)
				return err
			}
			fresh, collided = true, false
			continue
		}
		cmp := []etcd.Compare{etcd.CompareVersion(k, etcd.Equal, 0)}
		if cur.rev != 0 {
			cmp = []etcd.Compare{etcd.CompareModRevision(k, etcd.Equal, cur.rev)}
		}
		// When the compare fails, the key as it is now, to try again on.
		failure := []etcd.Op{{Range: &etcd.RangeRequest{Key: k}}}
		var (
			resp *etcd.TxnResponse
			err  error
		)
		if len(next) == 0 {
			resp, err = sh.s.txn(ctx, etcd.TxnRequest{Compare: cmp, Success: []etcd.Op{del(k)}, Failure: failure})
		} else {
			resp, err = sh.putLeased(ctx, cmp, failure, k, encodeHits(next), time.Now().Add(keep))
		}
		// A lost answer is not tried again: fn's count may have gone
		// through, and a second run would count it twice. The request is
		// refused as during an outage.
		if err != nil {
			sh.forget(key)
			return err
		}
		if resp.Succeeded {
			if len(next) == 0 {
				sh.remember(key, counter{})
			} else {
				sh.remember(key, counter{rev: resp.Header.Revision, hits: next})
			}
			return nil
		}
		var kv *etcd.KeyValue
		if len(resp.Responses) == 1 && resp.Responses[0].Range != nil && len(resp.Responses[0].Range.KVs) == 1 {
			kv = &resp.Responses[0].Range.KVs[0]
		}
		if cur, err = counterOf(k, kv); err != nil {
			sh.forget(key)
			return err
		}
		// Against a guess, not a collision: only this box's knowledge
		// was old.
		collided = fresh
		fresh = true
	}
	sh.forget(key)
	return ErrContention
}

// counter is what a box knows of a shared counter: its mod revision (0
// when absent) and its event times.
type counter struct {
	rev  int64
	hits []int64
}

func counterOf(k []byte, kv *etcd.KeyValue) (counter, error) {
	if kv == nil {
		return counter{}, nil
	}
	hits, err := decodeHits(kv.Value)
	if err != nil {
		return counter{}, fmt.Errorf("throttle counter %s: %w", k, err)
	}
	return counter{rev: kv.ModRevision, hits: hits}, nil
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
