//go:build unix

package store

import (
	"errors"
	"os"
	"syscall"
	"time"
)

// lockShared takes a shared lock on f, as bbolt's read-only open does,
// waiting up to timeout for a writer (the running service) to let go. It
// keeps the file from changing while checkFile walks it; the lock goes
// with f's close.
func lockShared(f *os.File, timeout time.Duration) error {
	start := time.Now()
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return err
		}
		if time.Since(start) >= timeout {
			return errLockTimeout
		}
		time.Sleep(50 * time.Millisecond)
	}
}
