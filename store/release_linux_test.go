package store

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"vmsauth/auth"
)

// mappedKB is how much of the file at path this process has mapped, from
// the Rss lines of /proc/self/smaps: what the file adds to VmRSS.
func mappedKB(t *testing.T, path string) int {
	t.Helper()
	// smaps names the file by its real path, which may contain spaces.
	path, err := filepath.EvalSymlinks(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kb, in := 0, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) >= 5 && strings.Contains(fields[0], "-"): // a mapping's header
			in = len(fields) >= 6 && strings.Join(fields[5:], " ") == path
		case in && fields[0] == "Rss:":
			n, err := strconv.Atoi(fields[1])
			if err != nil {
				t.Fatal(err)
			}
			kb += n
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return kb
}

// releaseDB is a database at a real file holding n client sessions of one
// user, made by 32 logins at a time.
func releaseDB(t *testing.T, opts Options, n int) (*DB, string, *auth.User, map[string]*auth.Session) {
	t.Helper()
	db, path, u := dbWithUser(t, opts)
	return db, path, u, createSessions(t, db, u.ID, n)
}

// wantAll reads every session of the user from the file (session lists are
// never cached) and compares them with what was stored.
func wantAll(t *testing.T, db *DB, userID int64, want map[string]*auth.Session) {
	t.Helper()
	got, err := db.UserSessions(t.Context(), userID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("user has %d sessions, want %d", len(got), len(want))
	}
	for _, g := range got {
		w := want[g.ID]
		if w == nil || g.TokenHash != w.TokenHash || !g.ExpiresAt.Equal(w.ExpiresAt) || g.UserAgent != w.UserAgent {
			t.Fatalf("session %s reads back as %+v, want %+v", g.ID, g, w)
		}
	}
}

// TestScansReleaseMappedPages: a full scan maps much of the file, and
// gives it back when it ends; what is read afterwards is the same.
func TestScansReleaseMappedPages(t *testing.T) {
	const n = 3000
	db, path, u, sessions := releaseDB(t, Options{ReleaseEvery: -1}, n)

	wantAll(t, db, u.ID, sessions)
	mapped := mappedKB(t, path)
	if mapped < 128 {
		t.Fatalf("reading %d sessions mapped %d kB of the file; the test cannot see a release", n, mapped)
	}

	counts, err := db.LiveSessions(time.Now())
	if err != nil || counts[auth.APIClient] != n {
		t.Fatalf("LiveSessions: %v %v, want %d client sessions", counts, err, n)
	}
	if kb := mappedKB(t, path); kb > 16 {
		t.Fatalf("after a live count %d kB of the file stay mapped (%d before)", kb, mapped)
	}

	wantAll(t, db, u.ID, sessions)
	if _, err := db.Sweep(time.Now(), 0); err != nil {
		t.Fatal(err)
	}
	if kb := mappedKB(t, path); kb > 16 {
		t.Fatalf("after a sweep %d kB of the file stay mapped", kb)
	}
	wantAll(t, db, u.ID, sessions)
}

// TestReleaseEvery: with ReleaseEvery set, pages that reads map are given
// back without a scan.
func TestReleaseEvery(t *testing.T) {
	db, path, u, sessions := releaseDB(t, Options{ReleaseEvery: 200 * time.Millisecond}, 2000)
	// Reads map the file, unless a release came between them and the
	// look at what is mapped: then read again.
	for try := 1; ; try++ {
		wantAll(t, db, u.ID, sessions)
		if mappedKB(t, path) >= 128 {
			break
		}
		if try == 20 {
			t.Fatal("reading 2000 sessions maps too little of the file for the test to see a release")
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for mappedKB(t, path) > 16 {
		if time.Now().After(deadline) {
			t.Fatalf("%d kB of the file still mapped 10 s after reads", mappedKB(t, path))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := db.Close(); err != nil { // stops the loop before bbolt closes
		t.Fatal(err)
	}
}

// TestChecksRelease: token checks that read the file release the map
// themselves every readRelease reads, long before the timer would.
func TestChecksRelease(t *testing.T) {
	const n = 3000
	db, path, u, sessions := releaseDB(t, Options{ReleaseEvery: time.Hour}, n)
	for _, s := range sessions { // n checks, each a cache miss
		if got, _, err := db.SessionByHash(t.Context(), s.TokenHash); err != nil || got.UserID != u.ID {
			t.Fatalf("check: %+v %v", got, err)
		}
	}
	// The check cache holds them all now; a list reads the file again
	// and maps much of it, which the checks below must give back.
	wantAll(t, db, u.ID, sessions)
	if kb := mappedKB(t, path); kb < 16*64 {
		t.Fatalf("reading %d sessions mapped %d kB of the file; the test cannot see a release", n, kb)
	}
	// Unknown tokens read the file too, but only the path to where they
	// would be: meta, root, branch and leaf pages, each in a 64 kB window
	// the kernel maps whole. The release one of these reads makes must
	// leave no more than that.
	for range 2 * readRelease {
		var h auth.TokenHash
		h[0] = 0xff
		if _, _, err := db.SessionByHash(t.Context(), h); err == nil {
			t.Fatal("an unknown token was found")
		}
	}
	if kb := mappedKB(t, path); kb > 8*64 {
		t.Fatalf("%d kB of the file mapped after %d checks that read it", kb, n+2*readRelease)
	}
}

// TestReleaseWhileRemapping releases every millisecond while logins grow
// the file, so bbolt remaps it again and again (from a 32 kB map), and
// checks read sessions throughout. A release that advised on a map bbolt
// had already dropped could zero whatever has been mapped there since,
// such as the Go heap: made outside a transaction, it crashed this test.
func TestReleaseWhileRemapping(t *testing.T) {
	defer func(n int) { initialMmapSize = n }(initialMmapSize)
	initialMmapSize = 0
	db, _, u, sessions := releaseDB(t, Options{ReleaseEvery: time.Millisecond}, 200)

	stop := make(chan struct{})
	var readers sync.WaitGroup
	known := make([]*auth.Session, 0, len(sessions))
	for _, s := range sessions {
		known = append(known, s)
	}
	for r := range 4 {
		readers.Go(func() {
			for i := r; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				want := known[i%len(known)]
				got, _, err := db.SessionByHash(t.Context(), want.TokenHash)
				if err != nil || got.ID != want.ID || got.UserID != u.ID {
					t.Errorf("check of %s during remaps: %+v %v", want.ID, got, err)
					return
				}
				if i%50 == 0 {
					if _, err := db.UserSessions(t.Context(), u.ID); err != nil {
						t.Errorf("session list during remaps: %v", err)
						return
					}
				}
			}
		})
	}
	more := createSessions(t, db, u.ID, 6000) // about 2 MB: six remaps or so
	close(stop)
	readers.Wait()
	for id, s := range more {
		sessions[id] = s
	}
	wantAll(t, db, u.ID, sessions)
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
}

// TestCloseDuringChecks: closing, twice at once, while checks run is
// neither a race nor a panic; the checks may fail once it is closed.
func TestCloseDuringChecks(t *testing.T) {
	db, _, _, sessions := releaseDB(t, Options{ReleaseEvery: time.Millisecond}, 300)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for _, s := range sessions {
				_, _, _ = db.SessionByHash(t.Context(), s.TokenHash)
			}
		})
	}
	for range 2 {
		wg.Go(func() { _ = db.Close() })
	}
	wg.Wait()
}
