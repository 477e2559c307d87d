package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"vmsauth/auth"
)

var _ auth.AuditLog = (*DB)(nil)

// AppendAudit adds entries to the trail and trims it to maxEntries and
// maxAge, in one transaction. Keys are sequence numbers, so the oldest
// entries come first in the bucket.
func (db *DB) AppendAudit(entries []auth.AuditEntry, maxEntries int, maxAge time.Duration, now time.Time) error {
	return db.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		for _, e := range entries {
			seq, err := b.NextSequence()
			if err != nil {
				return err
			}
			if err := put(tx, bucketAudit, binary.BigEndian.AppendUint64(nil, seq), e); err != nil {
				return err
			}
		}
		return trimAudit(b, maxEntries, now.Add(-maxAge))
	})
}

// trimAudit deletes the oldest entries beyond max and any older than cut.
// Entries are only ever removed from the front, so the keys from the first
// to the bucket's sequence are contiguous and their count is a subtraction.
func trimAudit(b *bolt.Bucket, max int, cut time.Time) error {
	c := b.Cursor()
	first, _ := c.First()
	if first == nil {
		return nil
	}
	excess := int(b.Sequence()-binary.BigEndian.Uint64(first)+1) - max
	var doomed [][]byte
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if excess <= 0 {
			var e auth.AuditEntry
			if json.Unmarshal(v, &e) == nil && !e.Time.Before(cut) {
				break
			}
		}
		doomed = append(doomed, bytes.Clone(k))
		excess--
	}
	for _, k := range doomed {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// Audit returns the entries matching f, newest first.
func (db *DB) Audit(f auth.AuditFilter) ([]auth.AuditEntry, error) {
	var out []auth.AuditEntry
	login := strings.ToLower(f.Login)
	err := db.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAudit).Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			var e auth.AuditEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			if !f.Since.IsZero() && e.Time.Before(f.Since) {
				break
			}
			if login != "" && strings.ToLower(e.Login) != login {
				continue
			}
			out = append(out, e)
			if f.Limit > 0 && len(out) >= f.Limit {
				break
			}
		}
		return nil
	})
	return out, err
}
