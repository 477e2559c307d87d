//go:build !unix

package store

import (
	"os"
	"time"
)

// lockShared does nothing where vmsauth is not deployed: bbolt's own lock
// still keeps a second writer out.
func lockShared(*os.File, time.Duration) error { return nil }
