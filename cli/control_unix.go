//go:build unix

package cli

import (
	"net"
	"syscall"
)

// listenPrivate binds a unix socket at path that only its owner can use
// from the moment it exists: the socket file takes its mode from the
// umask at bind, so a chmod afterwards would leave a window in which
// anyone could connect. The umask is process-wide; it is narrowed only
// around the bind, and narrowing it can only make a file another goroutine
// creates meanwhile stricter, never looser (the files vmsauth writes set
// their modes explicitly anyway).
func listenPrivate(path string) (net.Listener, error) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	return net.Listen("unix", path)
}
