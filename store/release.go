package store

import (
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Why the store gives back its mapped pages: bbolt reads the file through
// a shared read-only map, and every page a read touches stays mapped, and
// so counted in the process's resident set, until the map is dropped.
// Linux also maps the cached pages of the 64 kB window around each page
// touched (fault around; bbolt's MADV_RANDOM does not stop it). One sweep
// or live count walks every session, so a box with 100k sessions would
// carry tens of MB of the file in its RSS for good. Dropping the map's page table entries
// frees nothing the file needs: the pages stay in the page cache for the
// kernel to keep or reclaim, and the next read faults them back in.

const (
	// scanRelease is how many records a full scan reads between releases,
	// which bounds what one scan maps at a time to a few MB.
	scanRelease = 1024
	// readRelease is how many token checks that read the file (cache
	// misses) pass between releases. Each maps a 64 kB fault-around window
	// or two, so this bounds what they map to about 8 MB however fast they
	// come (up to 7.6 MB measured with 100k sessions). Releasing every 64
	// misses made checks that all miss about 20% slower, every 128 about
	// 10%: they map their leaf page again, and each release interrupts the
	// other cores to flush their TLBs.
	readRelease = 128
)

// dropMapped unmaps, for the process, every page of the file that reads
// have mapped. It must run inside a read transaction, which holds off the
// remap a growing file needs: the address and size it advises on are
// bbolt's current map, never memory the map has since given up.
func dropMapped(tx *bolt.Tx) error {
	return dropPages(tx.DB().Info().Data, uintptr(tx.Size()))
}

// scan calls fn on every record of bucket, giving the map back every
// scanRelease records, so a walk over every session never holds more than
// a few MB of the file mapped.
func scan(tx *bolt.Tx, bucket []byte, fn func(k, v []byte) error) error {
	n := 0
	return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
		if n++; n%scanRelease == 0 {
			_ = dropMapped(tx)
		}
		return fn(k, v)
	})
}

// releaseMapped is dropMapped in a transaction of its own.
func (db *DB) releaseMapped() error { return db.view(dropMapped) }

// releaser gives mapped pages back in the background every interval, and
// has token checks give them back themselves every readRelease reads of the
// file: a loop woken by them would run late behind a busy box's checks.
type releaser struct {
	every   time.Duration
	reads   atomic.Int64
	stop    chan struct{}
	done    chan struct{}
	stopped sync.Once
}

func newReleaser(every time.Duration) *releaser {
	return &releaser{every: every, stop: make(chan struct{}), done: make(chan struct{})}
}

// due counts a read of the file on a token check's path, and says whether
// this read is the one to release the map (inside its own transaction).
func (r *releaser) due() bool {
	return r != nil && r.reads.Add(1)%readRelease == 0
}

func (r *releaser) loop(db *DB) {
	defer close(r.done)
	defer db.recoverLoop("page releaser")
	t := time.NewTicker(r.every)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			_ = db.releaseMapped() // only fails on a closed database
		}
	}
}

// close stops the loop and waits for it; it may be called more than once,
// and at the same time.
func (r *releaser) close() {
	r.stopped.Do(func() { close(r.stop) })
	<-r.done
}
