// Package store keeps vmsauth's users, sessions and refresh tokens in one
// bbolt file and implements auth.Store on it. It owns that file: nothing else
// opens it or imports bbolt. It holds no rules; deciding who may log in and
// for how long is auth's job, and the rules its transactions apply (the
// session limit, what a logout or a user change ends) are auth's functions,
// which it calls. store/storetest holds the behaviour it must keep.
package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
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
	// ReleaseEvery is how often the pages of the file that reads have
	// mapped are given back (see release.go), so a long-running process's
	// resident set does not grow with the file; with it, token checks that
	// read the file also give them back every readRelease. Zero takes
	// DefaultReleaseEvery; a negative value never releases in the
	// background. Full scans and activity flushes give theirs back,
	// whatever this is.
	ReleaseEvery time.Duration
	// CheckLater leaves the walk of every page out of Open, for the caller
	// to start with CheckInBackground right after: on a large file the
	// walk takes longer than a start may (see README, Performance). Open
	// still checks the meta pages and the schema, and Health reports
	// auth.ErrStoreChecking until the walk has passed.
	CheckLater bool
}

// DefaultReleaseEvery is the page-release cadence of Options.ReleaseEvery:
// often enough that the resident set stays near the process's own memory,
// rarely enough that the faults to map the pages again cost nothing
// measurable. It is the store's own concern, so no caller needs to know it.
const DefaultReleaseEvery = 10 * time.Second

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
	batcher  batcher

	release *releaser // nil with a negative ReleaseEvery
	touches *touches
	health  *health

	closeOnce sync.Once
	closeErr  error
}

// The store's methods take a context as auth.Store asks, and do not
// consult it: a bbolt transaction is local and short, and one begun is
// finished rather than left half-way for a caller that went away.
var _ auth.Store = (*DB)(nil)

// Open opens the database at path, creating it if it does not exist (its
// directory must). A file that is not a whole, sound vmsauth database is
// refused and left as it is, so that a mistake in the path, a bad restore
// or a damaged disk never costs data: every page is checked first (see
// checkFile), and buckets are made only for a new file or by a schema
// migration, never to fill a gap. A read-only open never writes; neither
// does a writable open of a file already at the current schema.
func Open(path string, opts Options) (*DB, error) {
	if opts.Timeout == 0 {
		opts.Timeout = time.Second
	}
	if opts.ReleaseEvery == 0 {
		opts.ReleaseEvery = DefaultReleaseEvery
	}
	if err := checkFile(path, opts.Timeout, !opts.CheckLater); err != nil {
		return nil, err
	}
	db := &DB{path: path, touches: newTouches(), health: newHealth()}
	db.health.unchecked.Store(opts.CheckLater)
	// bbolt reads the meta pages and the free list as it opens, trusting
	// them; checkFile has checked them, but the file is another process's
	// to change between the two.
	err := db.guarded(func() (err error) {
		db.bolt, err = bolt.Open(path, 0o600, &bolt.Options{
			Timeout:         opts.Timeout,
			ReadOnly:        opts.ReadOnly,
			InitialMmapSize: initialMmapSize,
		})
		return err
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, lockedError(path)
	}
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	var version uint64
	err = db.view(func(tx *bolt.Tx) (err error) { version, err = inspect(tx); return err })
	switch {
	case err != nil:
	case version == schemaVersion:
	case opts.ReadOnly && version == 0:
		err = ErrForeign // an empty bbolt file: not ours to fill
	case opts.ReadOnly:
		err = fmt.Errorf("schema version %d needs upgrading to %d; open it read-write once", version, schemaVersion)
	case version == 0:
		err = db.update(create)
	default:
		err = db.update(migrate)
	}
	if err != nil {
		_ = db.bolt.Close()
		switch {
		case db.Failure() != nil:
			return nil, err // the guard's error, which names the file
		case errors.Is(err, ErrDamaged):
			return nil, fmt.Errorf("database %s is %w", path, err)
		}
		return nil, fmt.Errorf("database %s: %w", path, err)
	}
	go db.touches.loop(db)
	if opts.ReleaseEvery > 0 {
		db.release = newReleaser(opts.ReleaseEvery)
		go db.release.loop(db)
	}
	return db, nil
}

// errLockTimeout is lockShared's: another process holds the file.
var errLockTimeout = errors.New("timed out waiting for the lock")

func lockedError(path string) error {
	return fmt.Errorf("database %s is %w (is vmsauth serve running?)", path, ErrLocked)
}

// schemaBuckets are the buckets of each schema version, the first of
// which is 1: every vmsauth made all of its schema's buckets when it made
// or upgraded a file, so a file lacking one is damaged.
var schemaBuckets = [][]string{
	{"meta", "users", "users_by_login", "sessions", "sessions_by_hash", "user_sessions", "refresh", "user_refresh"},
	{"meta", "users", "users_by_login", "sessions", "sessions_by_hash", "user_sessions", "refresh", "user_refresh", "audit"},
	{"meta", "users", "users_by_login", "session_state", "session_device", "session_ids", "user_sessions", "refresh", "user_refresh", "audit"},
}

// inspect returns the schema version of the file, 0 for an empty bbolt
// file (a new database), or why it is not a sound vmsauth database: a
// foreign file, a newer schema, or a vmsauth file lacking a bucket of its
// schema or whose user indexes disagree, which only damage can do.
func inspect(tx *bolt.Tx) (uint64, error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		var names []string
		_ = tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			names = append(names, strconv.Quote(string(name)))
			return nil
		})
		if len(names) == 0 {
			return 0, nil
		}
		for _, b := range schemaBuckets {
			for _, name := range names {
				if slices.Contains(b, strings.Trim(name, `"`)) {
					return 0, fmt.Errorf("%w: its bucket meta is missing (it holds %s); %s", ErrDamaged, strings.Join(names, ", "), restoreAdvice)
				}
			}
		}
		return 0, ErrForeign
	}
	v := meta.Get(keySchema)
	switch {
	case v == nil:
		return 0, ErrForeign
	case len(v) != 8:
		return 0, fmt.Errorf("%w: its schema version is unreadable; %s", ErrDamaged, restoreAdvice)
	}
	n := binary.BigEndian.Uint64(v)
	if n == 0 || n > schemaVersion {
		return 0, fmt.Errorf("schema version %d, but this vmsauth knows only up to version %d (was it written by a newer vmsauth?)", n, schemaVersion)
	}
	for _, name := range schemaBuckets[n-1] {
		if tx.Bucket([]byte(name)) == nil {
			return 0, fmt.Errorf("%w: its bucket %s is missing; %s", ErrDamaged, name, restoreAdvice)
		}
	}
	// Every user has one login entry, written in the same transaction.
	users, logins := tx.Bucket(bucketUsers).Stats().KeyN, tx.Bucket(bucketUsersByLogin).Stats().KeyN
	if users != logins {
		return 0, fmt.Errorf("%w: it holds %d users but %d logins; %s", ErrDamaged, users, logins, restoreAdvice)
	}
	return n, nil
}

// create makes the buckets and schema record of a new database.
func create(tx *bolt.Tx) error {
	if n, err := inspect(tx); err != nil || n != 0 {
		return errors.Join(err, errors.New("the file changed while it was opened"))
	}
	for _, name := range allBuckets {
		if _, err := tx.CreateBucket(name); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketMeta).Put(keySchema, binary.BigEndian.AppendUint64(nil, schemaVersion))
}

// migrate upgrades a database from an older schema, recording each
// version as it goes; the whole upgrade is one transaction.
func migrate(tx *bolt.Tx) error {
	n, err := inspect(tx)
	if err != nil {
		return err
	}
	meta := tx.Bucket(bucketMeta)
	for ; n < schemaVersion; n++ {
		if err := migrations[n-1](tx); err != nil {
			return fmt.Errorf("upgrading schema %d to %d: %w", n, n+1, err)
		}
		if err := meta.Put(keySchema, binary.BigEndian.AppendUint64(nil, n+1)); err != nil {
			return err
		}
	}
	for _, name := range allBuckets {
		if tx.Bucket(name) == nil {
			return fmt.Errorf("upgrading left bucket %s missing", name)
		}
	}
	return nil
}

// HeldUsers reports whether a user was ever made in this file, even if
// none is left: the first admin is made only on a file that never held one,
// so that damage which hides the users can never hand out a new admin.
func (db *DB) HeldUsers() (held bool, err error) {
	err = db.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUsers)
		held = b.Sequence() > 0 || b.Stats().KeyN > 0
		return nil
	})
	return held, err
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
	err = db.view(func(tx *bolt.Tx) error {
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// Check walks every page of the file as last committed (see verifyPages)
// and reports the first inconsistency; nil means the file is sound. On a
// writable database it holds off writes meanwhile.
func (db *DB) Check() error {
	if db.bolt.IsReadOnly() {
		// No other process writes: Open holds a shared lock.
		return db.walk()
	}
	return <-db.CheckInBackground()
}

// CheckInBackground is Check in a goroutine of its own, whose result it
// returns. It takes the writer lock before it returns, and keeps it until
// the walk is over: reads go on meanwhile, but no write reaches the file
// before it is known to be sound, since writing into a damaged tree can
// spread the damage.
func (db *DB) CheckInBackground() <-chan error {
	result := make(chan error, 1)
	locked := make(chan struct{})
	var once sync.Once
	go func() {
		defer once.Do(func() { close(locked) })
		var err error
		berr := db.bolt.Update(func(*bolt.Tx) error {
			once.Do(func() { close(locked) })
			err = db.guarded(db.walk)
			return errRollback
		})
		if !errors.Is(berr, errRollback) {
			err = berr
		}
		if err == nil {
			db.health.unchecked.Store(false)
		}
		result <- err
	}()
	<-locked
	return result
}

// walk walks every page of the file, reading it apart from bbolt.
func (db *DB) walk() error {
	f, err := os.Open(db.path)
	if err != nil {
		return err
	}
	defer f.Close()
	return verifyFile(f, db.path, true)
}

// errRollback makes bbolt roll back a transaction that wrote nothing.
var errRollback = errors.New("rollback")

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
