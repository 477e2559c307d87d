package cli

import (
	"io"
	"time"

	"vmsauth/auth"
	"vmsauth/etcdstore"
	"vmsauth/store"
)

// Backend is what the commands need of a storage backend: the store and
// audit trail the rules work on, and the upkeep the service does on them.
// The commands depend on this, not on one backend; openService is the one
// place that picks the backend for the commands (bbolt, store.DB), and
// serve --etcd opens etcdstore.Store instead (openSite).
type Backend interface {
	auth.Store
	auth.AuditLog
	// HeldUsers says whether the store ever held a user: the first admin
	// is made only on one that never did.
	HeldUsers() (bool, error)
	// Sweep deletes the sessions and refresh tokens dead for longer than
	// keep, and returns how many it deleted.
	Sweep(now time.Time, keep time.Duration) (int, error)
	// LiveSessions counts the live sessions of each API (for /metrics).
	LiveSessions(now time.Time) (map[auth.API]int, error)
	// Failed is closed once the store can no longer be trusted; Failure
	// then says why. Serve stops on it.
	Failed() <-chan struct{}
	Failure() error
	// Close releases the store; nothing may use it afterwards.
	Close() error
}

// fileBackend is what only a backend kept in one local file offers: a
// consistent copy of the file, a walk of its every page, and that walk run
// beside serving at start. The backup command, the control socket's
// backup and serve's start use it where the backend has it; a backend
// without it has no file to copy or check.
type fileBackend interface {
	Backend
	// Backup writes a consistent copy of the file to w.
	Backup(w io.Writer) (int64, error)
	// Check walks every page; it returns the damage it finds.
	Check() error
	// CheckInBackground runs Check once beside serving, holding off every
	// write until it has passed; the channel gets its result.
	CheckInBackground() <-chan error
}

// bbolt's store is a file backend; etcd's is a backend with no file.
var (
	_ fileBackend = (*store.DB)(nil)
	_ Backend     = (*etcdstore.Store)(nil)
)
