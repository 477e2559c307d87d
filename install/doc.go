// Package install will wrap github.com/kardianos/service: registering
// vmsauth with the host's init system. It imports nothing of vmsauth's own.
package install
