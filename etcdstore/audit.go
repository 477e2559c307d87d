package etcdstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"vmsauth/auth"
	"vmsauth/etcd"
)

// auditChunk is the most entries one Txn writes, below etcd's default
// --max-txn-ops of 128 with room for the counter and the trim.
const auditChunk = 100

// auditPage is how many entries one read of the trail takes.
const auditPage = 256

// AppendAudit adds entries under sequence numbers from the audit counter
// and trims the trail as the bbolt store does: the oldest beyond
// maxEntries, and any older than now-maxAge. Each chunk of auditChunk
// entries is one Txn guarded by the counter, so boxes appending at once
// take turns; a batch larger than a chunk is not atomic as a whole (the
// Auditor writes about once a second, usually far fewer).
func (s *Store) AppendAudit(ctx context.Context, entries []auth.AuditEntry, maxEntries int, maxAge time.Duration, now time.Time) error {
	for len(entries) > 0 {
		n := min(len(entries), auditChunk)
		if err := s.appendAudit(ctx, entries[:n], maxEntries, now.Add(-maxAge)); err != nil {
			return err
		}
		entries = entries[n:]
	}
	return nil
}

func (s *Store) appendAudit(ctx context.Context, entries []auth.AuditEntry, max int, cut time.Time) error {
	counter := s.key("n/audit")
	values := make([][]byte, len(entries))
	for i := range entries {
		v, err := json.Marshal(&entries[i])
		if err != nil {
			return err
		}
		values[i] = v
	}
	// A chunk that etcd may have applied without answering is written
	// again: the trail may then hold it twice, which the bound absorbs.
	_, err := s.write(ctx, func(bool) (*etcd.TxnRequest, error) {
		n, rev, err := s.get(ctx, counter, 0)
		if err != nil {
			return nil, err
		}
		var last int64
		if n != nil {
			if last, err = parseID(n.Value); err != nil {
				return nil, fmt.Errorf("etcdstore: audit counter: %w", err)
			}
		}
		first, err := s.firstAudit(ctx, rev)
		if err != nil {
			return nil, err
		}
		if first == 0 {
			first = last + 1
		}
		// Entries are removed from the front only, so the keys from first
		// to last are contiguous and their count is a subtraction.
		excess := int(last-first+1) + len(entries) - max
		// Doomed stored entries: the oldest excess ones, and any older
		// than cut before the first that is not.
		doomedTo := first // the first stored entry kept
	scan:
		for doomedTo <= last {
			r, err := s.rangeKV(ctx, etcd.RangeRequest{
				Key: s.auditKey(doomedTo), RangeEnd: s.auditKey(last + 1), Revision: rev, Limit: auditPage,
			})
			if err != nil {
				return nil, err
			}
			if len(r.KVs) == 0 {
				break
			}
			for _, kv := range r.KVs {
				if excess <= 0 {
					var e auth.AuditEntry
					if json.Unmarshal(kv.Value, &e) == nil && !e.Time.Before(cut) {
						break scan
					}
				}
				excess--
				doomedTo++
			}
		}
		skip := 0 // new entries doomed as they are written
		if doomedTo > last {
			for skip < len(entries) && (excess > 0 || entries[skip].Time.Before(cut)) {
				excess--
				skip++
			}
		}
		txn := &etcd.TxnRequest{
			Compare: []etcd.Compare{unchanged(counter, n)},
			Success: []etcd.Op{put(counter, []byte(strconv.FormatInt(last+int64(len(entries)), 10)))},
		}
		if doomedTo > first {
			txn.Success = append(txn.Success, etcd.Op{Delete: &etcd.DeleteRangeRequest{
				Key: s.auditKey(first), RangeEnd: s.auditKey(doomedTo)}})
		}
		for i := skip; i < len(entries); i++ {
			txn.Success = append(txn.Success, put(s.auditKey(last+1+int64(i)), values[i]))
		}
		return txn, nil
	})
	return err
}

// firstAudit returns the sequence number of the oldest entry kept at rev,
// or 0 for none.
func (s *Store) firstAudit(ctx context.Context, rev int64) (int64, error) {
	p := s.key("a/")
	r, err := s.rangeKV(ctx, etcd.RangeRequest{Key: p, RangeEnd: etcd.PrefixEnd(p), Revision: rev, Limit: 1, KeysOnly: true})
	if err != nil || len(r.KVs) == 0 {
		return 0, err
	}
	seq, err := parseID(r.KVs[0].Key[len(p):])
	if err != nil {
		return 0, fmt.Errorf("etcdstore: audit key %s: %w", r.KVs[0].Key, err)
	}
	return seq, nil
}

// Audit returns the entries f selects, newest first, reading the trail
// backwards a page at a time at one revision.
func (s *Store) Audit(ctx context.Context, f auth.AuditFilter) ([]auth.AuditEntry, error) {
	n, rev, err := s.get(ctx, s.key("n/audit"), 0)
	if err != nil || n == nil {
		return nil, err
	}
	last, err := parseID(n.Value)
	if err != nil {
		return nil, fmt.Errorf("etcdstore: audit counter: %w", err)
	}
	first, err := s.firstAudit(ctx, rev)
	if err != nil || first == 0 {
		return nil, err
	}
	login := strings.ToLower(f.Login)
	var out []auth.AuditEntry
	for hi := last; hi >= first; hi -= auditPage {
		lo := max(first, hi-auditPage+1)
		r, err := s.rangeKV(ctx, etcd.RangeRequest{Key: s.auditKey(lo), RangeEnd: s.auditKey(hi + 1), Revision: rev})
		if err != nil {
			return nil, err
		}
		for i := len(r.KVs) - 1; i >= 0; i-- {
			var e auth.AuditEntry
			if err := json.Unmarshal(r.KVs[i].Value, &e); err != nil {
				return nil, fmt.Errorf("etcdstore: decode audit entry %s: %w", r.KVs[i].Key, err)
			}
			if !f.Since.IsZero() && e.Time.Before(f.Since) {
				return out, nil
			}
			if login != "" && strings.ToLower(e.Login) != login {
				continue
			}
			out = append(out, e)
			if f.Limit > 0 && len(out) >= f.Limit {
				return out, nil
			}
		}
	}
	return out, nil
}
