//go:build unix

package cli

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestControlSocketPrivateAtBind is finding 8 of issue 13: the control
// socket used to be bound with the process's umask and made 0600 only
// afterwards, leaving a window in which anyone could connect. Under the
// most permissive umask, the socket must be owner-only as it is bound.
func TestControlSocketPrivateAtBind(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), socketFile)
	ln, err := listenPrivate(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		t.Fatalf("socket bound with mode %o: others could connect before the chmod", perm)
	}
	// The process's umask is back as it was.
	if now := syscall.Umask(0); now != 0 {
		t.Fatalf("umask left at %o", now)
	}
}
