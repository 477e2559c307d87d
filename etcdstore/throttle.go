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

// Update is auth.SharedCounters on etcd: a compare-and-swap of t/<key> on
// the mod revision it read, tried again when another box wrote the key in
// between. A write carries a shared lease lasting at least keep, so a key
// nobody counts in any more is gone a little after its events have left
// the window. The number of keys is bounded by what each box lets through:
// a box asks only for the client keys its own Window admitted (at most
// its MaxCounters at once), and each login key came with one of them.
func (sh *Shared) Update(ctx context.Context, key string, keep time.Duration, fn func([]int64) ([]int64, bool)) error {
	k := sh.s.key("t/", key)
	for try := 0; try < maxTries; try++ {
		if try > 0 {
			// Spread the retries of boxes that collided.
			d := time.Duration(rand.Int64N(int64(time.Millisecond) * int64(min(try, 10))))
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(d):
			}
		}
		kv, _, err := sh.s.get(ctx, k, 0)
		if err != nil {
			return err
		}
		var hits []int64
		if kv != nil {
			if hits, err = decodeHits(kv.Value); err != nil {
				return fmt.Errorf("throttle counter %s: %w", k, err)
			}
		}
		next, write := fn(hits)
		if !write {
			return nil
		}
		var resp *etcd.TxnResponse
		cmp := []etcd.Compare{unchanged(k, kv)}
		if len(next) == 0 {
			if kv == nil {
				return nil
			}
			resp, err = sh.s.txn(ctx, etcd.TxnRequest{Compare: cmp, Success: []etcd.Op{del(k)}})
		} else {
			resp, err = sh.putLeased(ctx, cmp, k, encodeHits(next), time.Now().Add(keep))
		}
		// A lost answer is not tried again: fn's count may have gone
		// through, and a second run would count it twice. The request is
		// refused as during an outage.
		if err != nil {
			return err
		}
		if resp.Succeeded {
			return nil
		}
	}
	return ErrContention
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
