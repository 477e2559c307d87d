package store

import (
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkOpenCheck measures the page check every Open makes (see
// verify.go) on a file of 100k sessions, and Open as a whole: "warm" with
// the file in the page cache, as on a restart, "cold" after dropping it
// from there, as after a boot.
//
//	go test -run '^$' -bench OpenCheck -benchtime 20x ./store/
func BenchmarkOpenCheck(b *testing.B) {
	db, path, u := dbWithUser(b, Options{})
	createSessions(b, db, u.ID, 100_000)
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	for _, cold := range []bool{false, true} {
		name := "warm"
		if cold {
			name = "cold"
		}
		b.Run(name, func(b *testing.B) {
			var check, open time.Duration
			for range b.N {
				if cold {
					b.StopTimer()
					if err := uncache(path); err != nil {
						b.Skip("cannot drop the file from the page cache:", err)
					}
					b.StartTimer()
				}
				start := time.Now()
				if err := checkFile(path, time.Second, true); err != nil {
					b.Fatal(err)
				}
				check += time.Since(start)
				if cold {
					b.StopTimer()
					uncache(path)
					b.StartTimer()
				}
				start = time.Now()
				db, err := Open(path, Options{})
				if err != nil {
					b.Fatal(err)
				}
				open += time.Since(start)
				db.Close()
			}
			b.ReportMetric(float64(check.Microseconds())/1000/float64(b.N), "check-ms/op")
			b.ReportMetric(float64(open.Microseconds())/1000/float64(b.N), "open-ms/op")
			b.ReportMetric(float64(st.Size())/1e6, "file-MB")
		})
	}
}

// uncache drops the file from the page cache (written back first), as
// after a boot.
func uncache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return err
	}
	return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}
