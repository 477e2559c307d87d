package etcdstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"vmsauth/auth"
	"vmsauth/etcd"
)

// What serve needs of a backend beyond auth.Store and auth.AuditLog (see
// cli.Backend): whether the site ever held a user, the sweep, the count of
// live sessions for /metrics, and the failure channel.

// unavailable marks an etcd error that says the cluster cannot answer now
// (no endpoint answered, no leader, a timeout, a write whose answer was
// lost) as auth.ErrUnavailable too, so that web answers 503 rather than
// 500. The etcd kinds stay matchable (write retries on ErrMaybeApplied).
func unavailable(err error) error {
	if err == nil || errors.Is(err, auth.ErrUnavailable) {
		return err
	}
	if errors.Is(err, etcd.ErrUnavailable) || errors.Is(err, etcd.ErrMaybeApplied) ||
		errors.Is(err, etcd.ErrTimeout) || errors.Is(err, etcd.ErrNoLeader) {
		return fmt.Errorf("%w: %w", auth.ErrUnavailable, err)
	}
	return err
}

// HeldUsers says whether the site ever held a user: the user counter is
// made with the first user and never deleted.
func (s *Store) HeldUsers() (bool, error) {
	kv, _, err := s.get(context.Background(), s.key("n/users"), 0)
	if err != nil {
		return false, err
	}
	return kv != nil, nil
}

// Failed never closes: an etcd site is not damaged the way a file is;
// etcd being unreachable is an outage each request answers 503 for, and
// Health reports.
func (s *Store) Failed() <-chan struct{} { return nil }

// Failure is always nil (see Failed).
func (s *Store) Failure() error { return nil }

// pageSize bounds each range of a scan, so that a site with many sessions
// is read in pieces rather than in one answer held in memory.
const pageSize = 1000

// scan calls fn on every key under prefix, a page at a time, all at the
// revision of the first page (one consistent view).
func (s *Store) scan(ctx context.Context, prefix []byte, fn func(kv *etcd.KeyValue) error) error {
	return s.scanAt(ctx, prefix, 0, fn)
}

// scanAt is scan at the revision rev (0: the first page's).
func (s *Store) scanAt(ctx context.Context, prefix []byte, rev int64, fn func(kv *etcd.KeyValue) error) error {
	key, end := prefix, etcd.PrefixEnd(prefix)
	for {
		r, err := s.rangeKV(ctx, etcd.RangeRequest{Key: key, RangeEnd: end, Limit: pageSize, Revision: rev})
		if err != nil {
			return err
		}
		rev = r.Header.Revision
		for i := range r.KVs {
			if err := fn(&r.KVs[i]); err != nil {
				return err
			}
		}
		if !r.More || len(r.KVs) == 0 {
			return nil
		}
		key = append(append([]byte(nil), r.KVs[len(r.KVs)-1].Key...), 0)
	}
}

// LiveSessions counts the sessions live at now, by API, over the whole
// site. It reads every session record, so callers cache it.
func (s *Store) LiveSessions(now time.Time) (map[auth.API]int, error) {
	counts := map[auth.API]int{}
	err := s.scan(context.Background(), s.key("us/"), func(kv *etcd.KeyValue) error {
		sess, err := decodeSession(kv)
		if err != nil {
			return err
		}
		if sess.Live(now) {
			counts[sess.API]++
		}
		return nil
	})
	return counts, err
}

// sweepChunk sessions are deleted per Txn: three keys each plus a compare,
// well under etcd's default of 128 operations.
const sweepChunk = 30

// Sweep deletes, with the bbolt store's rules, the sessions that expired
// before now-keep and the refresh tokens past their expiry, used or not.
// Each deletion is guarded by the record's mod revision, so a session
// used (extended) or ended since the scan is left alone. Every box of a
// site sweeps; two sweeping at once delete each record once. It also
// deletes the index keys an ending left behind (see end).
func (s *Store) Sweep(now time.Time, keep time.Duration) (int, error) {
	ctx := context.Background()
	if err := s.sweepOrphans(ctx); err != nil {
		return 0, err
	}
	cut := now.Add(-keep)
	type dead struct {
		cmp etcd.Compare
		ops []etcd.Op
	}
	var sessions, refreshes []dead
	err := s.scan(ctx, s.key("us/"), func(kv *etcd.KeyValue) error {
		sess, err := decodeSession(kv)
		if err != nil {
			return err
		}
		// A touch still waiting on this box may have extended it.
		s.touches.Apply(s.touches.Generation(), sess)
		if sess.ExpiresAt.Before(cut) {
			sessions = append(sessions, dead{unchanged(kv.Key, kv), s.deleteSession(sess)})
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	err = s.scan(ctx, s.key("ur/"), func(kv *etcd.KeyValue) error {
		r, err := decodeRefresh(kv)
		if err != nil {
			return err
		}
		if !now.Before(r.ExpiresAt) {
			refreshes = append(refreshes, dead{unchanged(kv.Key, kv),
				[]etcd.Op{del(s.refreshKey(r.UserID, r.Hash)), del(s.refreshHashKey(r.Hash))}})
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	n := 0
	// One Txn per chunk; when one record in it changed, each is tried on
	// its own so that the others still go.
	for _, list := range [][]dead{sessions, refreshes} {
		for len(list) > 0 {
			chunk := list[:min(sweepChunk, len(list))]
			list = list[len(chunk):]
			var txn etcd.TxnRequest
			for _, d := range chunk {
				txn.Compare = append(txn.Compare, d.cmp)
				txn.Success = append(txn.Success, d.ops...)
			}
			resp, err := s.txn(ctx, txn)
			if err != nil {
				return n, err
			}
			if resp.Succeeded {
				n += len(chunk)
				continue
			}
			for _, d := range chunk {
				resp, err := s.txn(ctx, etcd.TxnRequest{Compare: []etcd.Compare{d.cmp}, Success: d.ops})
				if err != nil {
					return n, err
				}
				if resp.Succeeded {
					n++
				}
			}
		}
	}
	return n, nil
}

func decodeRefresh(kv *etcd.KeyValue) (*auth.Refresh, error) {
	r := new(auth.Refresh)
	if err := json.Unmarshal(kv.Value, r); err != nil {
		return nil, fmt.Errorf("etcdstore: decode refresh token %s: %w", kv.Key, err)
	}
	return r, nil
}

// sweepOrphans deletes the index keys (s/, i/, r/) whose record is gone,
// which only an ending too large to delete them with leaves (see end), and
// which it marks with orphansKey. Every range is read at the revision the
// mark was read at: an index whose record is absent then is an orphan for
// good, since a record is never written again once deleted (its token is
// random), and each deletion is guarded by the index key's revision.
func (s *Store) sweepOrphans(ctx context.Context) error {
	mark, rev, err := s.get(ctx, s.key(orphansKey), 0)
	if err != nil || mark == nil {
		return err
	}
	sessions, refreshes := map[string]bool{}, map[string]bool{}
	last := func(key []byte) string { return string(key[bytes.LastIndexByte(key, '/')+1:]) }
	for prefix, live := range map[string]map[string]bool{"us/": sessions, "ur/": refreshes} {
		if err := s.scanAt(ctx, s.key(prefix), rev, func(kv *etcd.KeyValue) error {
			live[last(kv.Key)] = true
			return nil
		}); err != nil {
			return err
		}
	}
	var orphans []etcd.Compare
	for prefix, live := range map[string]map[string]bool{"s/": sessions, "i/": sessions, "r/": refreshes} {
		if err := s.scanAt(ctx, s.key(prefix), rev, func(kv *etcd.KeyValue) error {
			hash := last(kv.Key)
			if prefix == "i/" {
				hash = last(kv.Value) // "<user id>/<hash>"
			}
			if !live[hash] {
				orphans = append(orphans, unchanged(kv.Key, kv))
			}
			return nil
		}); err != nil {
			return err
		}
	}
	for chunk := range slices.Chunk(orphans, 100) {
		txn := etcd.TxnRequest{Compare: chunk}
		for _, c := range chunk {
			txn.Success = append(txn.Success, del(c.Key))
		}
		resp, err := s.txn(ctx, txn)
		if err != nil {
			return err
		}
		if !resp.Succeeded {
			return nil // changed meanwhile: the next sweep looks again
		}
	}
	// A later ending that left orphans wrote the mark again: keep it then.
	_, err = s.txn(ctx, etcd.TxnRequest{Compare: []etcd.Compare{unchanged(mark.Key, mark)}, Success: []etcd.Op{del(mark.Key)}})
	return err
}
