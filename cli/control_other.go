//go:build !unix

package cli

import "net"

// listenPrivate binds a unix socket at path; without a umask to narrow,
// listenControl's chmod makes it owner-only.
func listenPrivate(path string) (net.Listener, error) {
	return net.Listen("unix", path)
}
