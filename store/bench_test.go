package store

// Benchmarks of session writes on a real file, each on disk (fsync) before
// it returns. They live inside the package to compare CreateSession with
// what it did before it batched: one bbolt transaction, and so one commit,
// per session.
//
//	go test -run '^$' -bench . -benchtime=3s ./store/

import (
	"crypto/rand"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"vmsauth/auth"
)

// benchDB is a database on a real file with one client user.
func benchDB(b *testing.B) (*DB, *auth.User) {
	db, _, u := dbWithUser(b, Options{})
	return db, u
}

// dbWithUser opens a database on a real file in a temporary directory and
// makes one client user; it returns the file's path too.
func dbWithUser(tb testing.TB, opts Options) (*DB, string, *auth.User) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "vmsauth.db")
	db, err := Open(path, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	now := time.Now()
	u := &auth.User{Login: "bench", Name: "bench", APIs: []auth.API{auth.APIClient}, CreatedAt: now, UpdatedAt: now}
	if err := db.CreateUser(u); err != nil {
		tb.Fatal(err)
	}
	return db, path, u
}

// newBenchSession is a live session of the user shaped like the ones the
// service makes: random token hash.
func newBenchSession(userID int64) *auth.Session {
	now := time.Now()
	s := &auth.Session{
		UserID: userID, API: auth.APIClient,
		CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(auth.DefaultClientIdle),
		ClientMeta: auth.ClientMeta{IP: "192.0.2.10", UserAgent: "okhttp/4.12.0", Client: "android"},
	}
	_, _ = rand.Read(s.TokenHash[:])
	s.ID = s.TokenHash.SessionID()
	return s
}

// parallel stores n sessions from writers goroutines with write, and
// returns the wall time.
func parallel(b *testing.B, writers, n int, userID int64, write func(*auth.Session) error) time.Duration {
	b.Helper()
	var next atomic.Int64
	failed := make(chan error, writers)
	var wg sync.WaitGroup
	start := time.Now()
	for range writers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if err := write(newBenchSession(userID)); err != nil {
					failed <- err
					return
				}
			}
		})
	}
	wg.Wait()
	d := time.Since(start)
	close(failed)
	if err := <-failed; err != nil {
		b.Fatal(err)
	}
	return d
}

// BenchmarkCreateSession measures session writes: "64-parallel" as 64
// logins at once, against the same 64 writers with a commit each (the
// ratio says how much sharing commits gains); "alone" as one login with
// nobody to share a commit with, whose wait for company is MaxBatchDelay,
// against a commit of its own.
func BenchmarkCreateSession(b *testing.B) {
	const writers = 64
	b.Run("64-parallel", func(b *testing.B) {
		db, u := benchDB(b)
		oneByOne := func(s *auth.Session) error {
			return db.bolt.Update(func(tx *bolt.Tx) error {
				return createSession(tx, s, auth.CreateOptions{Now: s.CreatedAt}, db.touches, new([]auth.TokenHash))
			})
		}
		batched := func(s *auth.Session) error { return db.CreateSession(s, auth.CreateOptions{Now: s.CreatedAt}) }
		b.StopTimer()
		base := parallel(b, writers, b.N, u.ID, oneByOne)
		b.StartTimer()
		d := parallel(b, writers, b.N, u.ID, batched)
		b.ReportMetric(float64(b.N)/d.Seconds(), "sessions/s")
		b.ReportMetric(float64(b.N)/base.Seconds(), "commit-each/s")
		b.ReportMetric(base.Seconds()/d.Seconds(), "ratio")
	})
	b.Run("alone", func(b *testing.B) {
		db, u := benchDB(b)
		var own time.Duration
		for range b.N {
			s := newBenchSession(u.ID)
			b.StopTimer()
			start := time.Now()
			err := db.bolt.Update(func(tx *bolt.Tx) error {
				return createSession(tx, s, auth.CreateOptions{Now: s.CreatedAt}, db.touches, new([]auth.TokenHash))
			})
			own += time.Since(start)
			b.StartTimer()
			if err != nil {
				b.Fatal(err)
			}
			if err := db.CreateSession(newBenchSession(u.ID), auth.CreateOptions{Now: s.CreatedAt}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(own.Microseconds())/1000/float64(b.N), "commit-ms/op")
	})
}

// createSessions stores n client sessions of the user from 32 goroutines
// at a time, as parallel logins would, and returns them by id.
func createSessions(t testing.TB, db *DB, userID int64, n int) map[string]*auth.Session {
	t.Helper()
	var (
		mu      sync.Mutex
		made    = map[string]*auth.Session{}
		next    atomic.Int64
		wg      sync.WaitGroup
		failure atomic.Value
	)
	for range 32 {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				s := newBenchSession(userID)
				if err := db.CreateSession(s, auth.CreateOptions{}); err != nil {
					failure.Store(err)
					return
				}
				mu.Lock()
				made[s.ID] = s
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err, _ := failure.Load().(error); err != nil {
		t.Fatal(err)
	}
	return made
}
