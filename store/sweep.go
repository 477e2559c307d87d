package store

import (
	"bytes"
	"encoding/json"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"vmsauth/auth"
)

// sweepBatch bounds each delete transaction, so a sweep of a large file
// holds the writer lock only briefly at a time.
const sweepBatch = 1000

// Sweep deletes what can no longer be used, so the file does not grow
// forever: sessions that expired before now-keep (kept that long so their
// tokens still answer "expired" rather than "invalid" for a while), and
// refresh tokens past their expiry, used or not (a used one is kept until
// then, because presenting it again must still end its chain). It scans in
// read transactions, which do not block logins, and deletes in small
// write transactions. It returns how many records it removed.
func (db *DB) Sweep(now time.Time, keep time.Duration) (int, error) {
	defer db.releaseMapped()
	cut := now.Add(-keep)
	sessions, err := db.collect(bucketSessionState, func(v []byte) (bool, error) {
		_, expires, err := stateHead(v)
		return err == nil && expires.Before(cut), err
	})
	if err != nil {
		return 0, err
	}
	refreshes, err := db.collect(bucketRefresh, func(v []byte) (bool, error) {
		var r auth.Refresh
		err := json.Unmarshal(v, &r)
		return err == nil && !now.Before(r.ExpiresAt), err
	})
	if err != nil {
		return 0, err
	}
	// A swept session's token must be unknown to checks from now on, not
	// "expired" as a cached copy would still say.
	defer db.sessions.reset()
	n := 0
	for batch := range slices.Chunk(sessions, sweepBatch) {
		err := db.update(func(tx *bolt.Tx) error {
			for _, h := range batch {
				// Re-read: the session may have been used (and extended) or
				// ended since the scan.
				s, err := sessionByHash(tx, auth.TokenHash(h))
				if err != nil || !s.ExpiresAt.Before(cut) {
					continue
				}
				if err := deleteSession(tx, s); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return n, err
		}
	}
	for batch := range slices.Chunk(refreshes, sweepBatch) {
		err := db.update(func(tx *bolt.Tx) error {
			for _, h := range batch {
				r, err := get[auth.Refresh](tx, bucketRefresh, h)
				if err != nil || r == nil {
					continue
				}
				if err := tx.Bucket(bucketRefresh).Delete(h); err != nil {
					return err
				}
				if err := tx.Bucket(bucketUserRefresh).Delete(userKey(r.UserID, h)); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// collect returns the keys of bucket whose values match.
func (db *DB) collect(bucket []byte, match func(v []byte) (bool, error)) ([][]byte, error) {
	var keys [][]byte
	err := db.view(func(tx *bolt.Tx) error {
		return scan(tx, bucket, func(k, v []byte) error {
			ok, err := match(v)
			if ok {
				keys = append(keys, bytes.Clone(k))
			}
			return err
		})
	})
	return keys, err
}

// Stats counts what the file holds.
type Stats struct {
	Users, Sessions int
}

// Stats counts users and stored sessions, live or not.
func (db *DB) Stats() (Stats, error) {
	defer db.releaseMapped()
	var st Stats
	err := db.view(func(tx *bolt.Tx) error {
		st.Users = tx.Bucket(bucketUsers).Stats().KeyN
		st.Sessions = tx.Bucket(bucketSessionState).Stats().KeyN
		return nil
	})
	return st, err
}

// LiveSessions counts the sessions live at now, by API. It reads every
// session's state record, so callers cache it.
func (db *DB) LiveSessions(now time.Time) (map[auth.API]int, error) {
	defer db.releaseMapped()
	counts := map[auth.API]int{}
	err := db.view(func(tx *bolt.Tx) error {
		return scan(tx, bucketSessionState, func(_, v []byte) error {
			api, expires, err := stateHead(v)
			if err != nil {
				return err
			}
			if now.Before(expires) {
				counts[api]++
			}
			return nil
		})
	})
	return counts, err
}
