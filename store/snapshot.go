package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"

	"vmsauth/auth"
)

// A snapshot (auth.Snapshot) carries a database's records between this
// store and a site's: Snapshot reads one out of a file for `vmsauth site
// init`, and WriteSnapshot makes a new file of one for `vmsauth backup` on
// a site box, an ordinary database that `vmsauth restore` takes.

// Snapshot reads every user, session, refresh token and audit entry, with
// the user id and audit counters, in one read transaction: one consistent
// view. Activity not yet written (touches) is left out: a last-seen time
// a second old is not worth holding a writer for.
func (db *DB) Snapshot() (*auth.Snapshot, error) {
	snap := new(auth.Snapshot)
	err := db.view(func(tx *bolt.Tx) error {
		users := tx.Bucket(bucketUsers)
		snap.LastUserID = int64(users.Sequence())
		err := users.ForEach(func(k, _ []byte) error {
			u, err := get[auth.User](tx, bucketUsers, k)
			if err == nil {
				snap.Users = append(snap.Users, u)
			}
			return err
		})
		if err != nil {
			return err
		}
		devices := tx.Bucket(bucketSessionDevice)
		err = tx.Bucket(bucketSessionState).ForEach(func(k, v []byte) error {
			if len(k) != len(auth.TokenHash{}) {
				return fmt.Errorf("malformed key %x in %s", k, bucketSessionState)
			}
			s := new(auth.Session)
			if err := decodeState(auth.TokenHash(k), v, s); err != nil {
				return fmt.Errorf("session %x: %w", k, err)
			}
			if d := devices.Get(k); d != nil {
				if err := decodeDevice(d, &s.ClientMeta); err != nil {
					return fmt.Errorf("session %x: %w", k, err)
				}
			}
			snap.Sessions = append(snap.Sessions, s)
			return nil
		})
		if err != nil {
			return err
		}
		err = tx.Bucket(bucketRefresh).ForEach(func(k, _ []byte) error {
			r, err := get[auth.Refresh](tx, bucketRefresh, k)
			if err == nil {
				snap.Refreshes = append(snap.Refreshes, r)
			}
			return err
		})
		if err != nil {
			return err
		}
		audit := tx.Bucket(bucketAudit)
		snap.LastAudit = int64(audit.Sequence())
		return audit.ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				return fmt.Errorf("malformed key %x in %s", k, bucketAudit)
			}
			rec := auth.AuditRecord{Seq: int64(binary.BigEndian.Uint64(k))}
			if err := json.Unmarshal(v, &rec.Entry); err != nil {
				return fmt.Errorf("decode audit entry %d: %w", rec.Seq, err)
			}
			snap.Audit = append(snap.Audit, rec)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return snap, nil
}

// snapshotChunk is how many records one transaction of WriteSnapshot
// writes, so that a large site is not held in memory as one transaction's
// dirty pages.
const snapshotChunk = 5000

// WriteSnapshot makes a new database file at path holding snap, refusing a
// path that exists. The records are checked as they go in (a session or
// refresh token of no user, a login twice, an id above the counter): a
// file made of a broken snapshot would be refused at its first open or
// serve wrongly. The file is synced before WriteSnapshot returns; a
// failure leaves a partial file at path, for the caller (who writes to a
// temp file) to remove.
func WriteSnapshot(path string, snap *auth.Snapshot) (err error) {
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("write snapshot: %s exists", path)
	}
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, InitialMmapSize: initialMmapSize})
	if err != nil {
		return fmt.Errorf("write snapshot %s: %w", path, err)
	}
	defer func() {
		if cerr := b.Close(); err == nil {
			err = cerr
		}
	}()
	// One sync at the end rather than one per chunk: the file is no one's
	// until it is whole.
	b.NoSync = true
	if err := b.Update(create); err != nil {
		return err
	}
	users := make(map[int64]bool, len(snap.Users))
	var maxID int64
	for _, u := range snap.Users {
		if u.ID <= 0 || users[u.ID] {
			return fmt.Errorf("write snapshot: user id %d is invalid or given twice", u.ID)
		}
		users[u.ID] = true
		maxID = max(maxID, u.ID)
	}
	if maxID > snap.LastUserID {
		return fmt.Errorf("write snapshot: user id %d is above the counter %d", maxID, snap.LastUserID)
	}
	var maxSeq int64
	for _, a := range snap.Audit {
		maxSeq = max(maxSeq, a.Seq)
	}
	if maxSeq > snap.LastAudit {
		return fmt.Errorf("write snapshot: audit entry %d is above the counter %d", maxSeq, snap.LastAudit)
	}
	// Each kind of record goes in chunks; put writes the i-th record.
	chunks := func(n int, put func(tx *bolt.Tx, i int) error) error {
		for lo := 0; lo < n; lo += snapshotChunk {
			err := b.Update(func(tx *bolt.Tx) error {
				for i := lo; i < min(n, lo+snapshotChunk); i++ {
					if err := put(tx, i); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("write snapshot: %w", err)
			}
		}
		return nil
	}
	steps := []func() error{
		func() error {
			return chunks(len(snap.Users), func(tx *bolt.Tx, i int) error {
				u := snap.Users[i]
				if err := loginFree(tx, u.Login); err != nil {
					return fmt.Errorf("user %d: login %q: %w", u.ID, u.Login, err)
				}
				return putUser(tx, u, "")
			})
		},
		func() error {
			return chunks(len(snap.Sessions), func(tx *bolt.Tx, i int) error {
				s := snap.Sessions[i]
				if !users[s.UserID] {
					return fmt.Errorf("session %s of user %d, who is not in the snapshot", s.ID, s.UserID)
				}
				return putSession(tx, s)
			})
		},
		func() error {
			return chunks(len(snap.Refreshes), func(tx *bolt.Tx, i int) error {
				r := snap.Refreshes[i]
				if !users[r.UserID] {
					return fmt.Errorf("refresh token of user %d, who is not in the snapshot", r.UserID)
				}
				return putRefresh(tx, r)
			})
		},
		func() error {
			return chunks(len(snap.Audit), func(tx *bolt.Tx, i int) error {
				a := snap.Audit[i]
				if a.Seq <= 0 {
					return fmt.Errorf("audit entry with sequence %d", a.Seq)
				}
				return put(tx, bucketAudit, binary.BigEndian.AppendUint64(nil, uint64(a.Seq)), a.Entry)
			})
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	err = b.Update(func(tx *bolt.Tx) error {
		return errors.Join(
			tx.Bucket(bucketUsers).SetSequence(uint64(snap.LastUserID)),
			tx.Bucket(bucketAudit).SetSequence(uint64(snap.LastAudit)),
		)
	})
	if err != nil {
		return err
	}
	return b.Sync()
}
