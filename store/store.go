// Package store keeps vmsauth's users, sessions and refresh tokens in one
// bbolt file and implements auth.Store on it. It owns that file: nothing else
// opens it or imports bbolt. It holds no rules; deciding who may log in and
// for how long is auth's job.
package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"vmsauth/auth"
)

// migrations[i] upgrades a database from schema version i+1 to i+2. A
// change to the file's shape appends a step here; Open runs the steps a
// file lacks, in the same transaction that records the new version.
var migrations = []func(tx *bolt.Tx) error{
	// 1 → 2: the audit trail.
	func(tx *bolt.Tx) error { _, err := tx.CreateBucketIfNotExists(bucketAudit); return err },
	// 2 → 3: sessions in binary, split into state and device (see codec.go).
	migrateSessionsToBinary,
}

// schemaVersion is written into new databases and checked on every open, so
// an older vmsauth refuses a file a newer one has reshaped.
var schemaVersion = uint64(len(migrations) + 1)

var (
	bucketMeta          = []byte("meta")
	bucketUsers         = []byte("users")          // id → User
	bucketUsersByLogin  = []byte("users_by_login") // lower-case login → id
	bucketSessionState  = []byte("session_state")  // token hash → state record
	bucketSessionDevice = []byte("session_device") // token hash → device record
	bucketSessionIDs    = []byte("session_ids")    // public id (binary) → token hash
	bucketUserSessions  = []byte("user_sessions")  // user id + token hash → nothing
	bucketRefresh       = []byte("refresh")        // token hash → Refresh
	bucketUserRefresh   = []byte("user_refresh")   // user id + token hash → nothing
	bucketAudit         = []byte("audit")          // sequence → AuditEntry

	allBuckets = [][]byte{bucketMeta, bucketUsers, bucketUsersByLogin, bucketSessionState,
		bucketSessionDevice, bucketSessionIDs, bucketUserSessions, bucketRefresh,
		bucketUserRefresh, bucketAudit}

	keySchema = []byte("schema")
)

var (
	// ErrLocked means another process (normally the running service) holds
	// the database file.
	ErrLocked = errors.New("in use by another process")
	// ErrForeign means the file is a bbolt database written by something else.
	ErrForeign = errors.New("not a vmsauth database")
	// ErrInvalid means the file is not a whole bbolt database: empty,
	// truncated or something else entirely.
	ErrInvalid = errors.New("not a valid database file")
)

// Options tune Open.
type Options struct {
	// Timeout is how long to wait for another process to release the file;
	// 1s when zero. bbolt would otherwise wait forever.
	Timeout time.Duration
	// ReadOnly opens the file without creating or changing it.
	ReadOnly bool
	// ReleaseEvery, when set, is how often the pages of the file that reads
	// have mapped are given back (see release.go), so a long-running
	// process's resident set does not grow with the file; with it, token
	// checks that read the file also give them back every readRelease.
	// Full scans and activity flushes give theirs back, whatever this is.
	ReleaseEvery time.Duration
}

// initialMmapSize is the map bbolt starts with. A modest map up front means
// the map rarely has to grow, and growing it waits for every open read
// transaction. Tests make it small to make bbolt remap often.
var initialMmapSize = 8 << 20

// DB is an open vmsauth database. Its methods are safe for concurrent use.
type DB struct {
	bolt     *bolt.DB
	path     string
	users    userCache
	sessions sessionCache

	release *releaser // nil without ReleaseEvery
	touches *touches

	closeOnce sync.Once
	closeErr  error
}

var _ auth.Store = (*DB)(nil)

// Open opens the database at path, creating it if it does not exist (its
// directory must). A file that is not a whole vmsauth database is refused and
// left as it is, so that a mistake in the path or a bad restore never costs
// data.
func Open(path string, opts Options) (*DB, error) {
	if opts.Timeout == 0 {
		opts.Timeout = time.Second
	}
	if err := checkFile(path); err != nil {
		return nil, err
	}
	b, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:         opts.Timeout,
		ReadOnly:        opts.ReadOnly,
		InitialMmapSize: initialMmapSize,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("database %s is %w (is vmsauth serve running?)", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	// Concurrent logins share commits through Batch (see CreateSession).
	// bbolt's default batch waits 10 ms for company, which a lone login
	// would pay in full. 1 ms costs it little, and a busy moment still
	// fills batches: logins that come while one commits (fsync) queue up
	// for the next. A batch starts at once when it holds as many logins as
	// a flood brings at a time.
	b.MaxBatchDelay = time.Millisecond
	b.MaxBatchSize = 64
	if opts.ReadOnly {
		err = b.View(prepare)
	} else {
		err = b.Update(prepare)
	}
	if err != nil {
		_ = b.Close()
		return nil, fmt.Errorf("database %s: %w", path, err)
	}
	db := &DB{bolt: b, path: path, touches: newTouches()}
	go db.touches.loop(db)
	if opts.ReleaseEvery > 0 {
		db.release = newReleaser(opts.ReleaseEvery)
		go db.release.loop(db)
	}
	return db, nil
}

// prepare checks the schema and, in a writable transaction, creates what a
// new database lacks. It refuses a database holding anything of someone
// else's, and then the transaction rolls back untouched.
func prepare(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		empty := true
		_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
		if !empty || !tx.Writable() {
			return ErrForeign
		}
		var err error
		if meta, err = tx.CreateBucket(bucketMeta); err != nil {
			return err
		}
		if err := meta.Put(keySchema, binary.BigEndian.AppendUint64(nil, schemaVersion)); err != nil {
			return err
		}
	}
	v := meta.Get(keySchema)
	if len(v) != 8 {
		return ErrForeign
	}
	n := binary.BigEndian.Uint64(v)
	switch {
	case n == 0 || n > schemaVersion:
		return fmt.Errorf("schema version %d, but this vmsauth knows only up to version %d (was it written by a newer vmsauth?)", n, schemaVersion)
	case n < schemaVersion && !tx.Writable():
		return fmt.Errorf("schema version %d needs upgrading to %d; open it read-write once", n, schemaVersion)
	}
	for ; n < schemaVersion; n++ {
		if err := migrations[n-1](tx); err != nil {
			return fmt.Errorf("upgrading schema %d to %d: %w", n, n+1, err)
		}
		if err := meta.Put(keySchema, binary.BigEndian.AppendUint64(nil, n+1)); err != nil {
			return err
		}
	}
	for _, name := range allBuckets {
		if !tx.Writable() {
			if tx.Bucket(name) == nil {
				return fmt.Errorf("bucket %s is missing", name)
			}
			continue
		}
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	return nil
}

// Close writes the activity still waiting and releases the file. Every call
// after the first, or at the same time, waits for it and returns its result.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		db.touches.close()
		flushed := db.flushTouches()
		if db.release != nil {
			db.release.close()
		}
		db.closeErr = errors.Join(flushed, db.bolt.Close())
	})
	return db.closeErr
}

// Path is the file the database was opened from.
func (db *DB) Path() string { return db.path }

// Backup writes a consistent copy of the whole database to w while others
// keep using it, and returns how many bytes it wrote.
func (db *DB) Backup(w io.Writer) (n int64, err error) {
	err = db.bolt.View(func(tx *bolt.Tx) error {
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// Check walks every page of the file and reports all inconsistencies found,
// joined; nil means the file is sound.
func (db *DB) Check() error {
	defer db.releaseMapped()
	return db.bolt.View(func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
}

// itob is the key form of an id: big-endian, so keys sort by id.
func itob(id int64) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(id))
}

// get decodes the JSON value at key in bucket, or returns nil if there is
// none. The result is a fresh copy, safe to use after the transaction.
func get[T any](tx *bolt.Tx, bucket, key []byte) (*T, error) {
	v := tx.Bucket(bucket).Get(key)
	if v == nil {
		return nil, nil
	}
	var t T
	if err := json.Unmarshal(v, &t); err != nil {
		return nil, fmt.Errorf("decode %s/%x: %w", bucket, key, err)
	}
	return &t, nil
}

func put(tx *bolt.Tx, bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Bucket(bucket).Put(key, data)
}
