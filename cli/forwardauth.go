package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"vmsauth/web"
)

// forwardAuthAddr is a parsed --forward-auth-listen.
type forwardAuthAddr struct {
	network string // "tcp" or "unix"
	address string // host:port, or the socket's path
	gid     int    // group of the socket from --forward-auth-group; -1: its directory's
}

// forwardAuth parses --forward-auth-listen and --forward-auth-group; nil
// means the listener is off. It is plain HTTP, so it must stay on the box:
// a proxy on another host uses the HTTPS listener, with keep-alive.
func (c *config) forwardAuth() (*forwardAuthAddr, error) {
	if c.ForwardAuthListen == "" {
		if c.ForwardAuthGroup != "" {
			return nil, errors.New("--forward-auth-group needs --forward-auth-listen unix:/path")
		}
		return nil, nil
	}
	if path, ok := strings.CutPrefix(c.ForwardAuthListen, "unix:"); ok {
		if path == "" {
			return nil, errors.New("--forward-auth-listen unix: needs a path, e.g. unix:/var/lib/vmsauth/forward-auth.sock")
		}
		gid, err := lookupGroup(c.ForwardAuthGroup)
		if err != nil {
			return nil, err
		}
		return &forwardAuthAddr{network: "unix", address: path, gid: gid}, nil
	}
	if c.ForwardAuthGroup != "" {
		return nil, errors.New("--forward-auth-group applies only to a unix socket (--forward-auth-listen unix:/path)")
	}
	host, port, err := net.SplitHostPort(c.ForwardAuthListen)
	if err != nil || port == "" {
		return nil, fmt.Errorf("--forward-auth-listen %q: want 127.0.0.1:PORT, [::1]:PORT or unix:/path", c.ForwardAuthListen)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("--forward-auth-listen %q: plain HTTP is for a proxy on this box only, so the address must be loopback "+
			"(127.0.0.0/8 or ::1, not a name or all interfaces); a proxy on another host uses the HTTPS --listen", c.ForwardAuthListen)
	}
	return &forwardAuthAddr{network: "tcp", address: c.ForwardAuthListen, gid: -1}, nil
}

// lookupGroup resolves --forward-auth-group, a name or a numeric id; ""
// gives -1.
func lookupGroup(name string) (int, error) {
	if name == "" {
		return -1, nil
	}
	if id, err := strconv.Atoi(name); err == nil && id >= 0 {
		return id, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("--forward-auth-group %q: %v", name, err)
	}
	return strconv.Atoi(g.Gid)
}

// openForwardAuth opens the forward-auth listener, or returns nils when it
// is off. where is its address as logged: http://ADDR or unix:PATH.
func openForwardAuth(cfg *config, h *web.ForwardAuth, log *slog.Logger) (_ *web.ForwardAuthServer, _ net.Listener, where string, _ error) {
	fa, err := cfg.forwardAuth()
	if err != nil || fa == nil {
		return nil, nil, "", err
	}
	var ln net.Listener
	if fa.network == "unix" {
		ln, err = listenForwardAuthSocket(fa.address, fa.gid, cfg.Data, log)
	} else {
		ln, err = net.Listen("tcp", fa.address)
	}
	if err != nil {
		return nil, nil, "", fmt.Errorf("--forward-auth-listen %s: %w", cfg.ForwardAuthListen, err)
	}
	srv := web.NewForwardAuthServer(h)
	where = "http://" + ln.Addr().String()
	if fa.network == "unix" {
		where = "unix:" + fa.address
	}
	log.Info("forward auth listening", "addr", where, "routes", "/auth/verify /healthz")
	return srv, ln, where, nil
}

// Mode of the forward-auth socket, and of the data directory when the socket
// is in it. Connecting needs write permission on the socket, so 0660 lets its
// owner and group in. The directory's 0710 lets the group reach the socket
// without listing the directory; every other file in it is 0600 (the
// certificate, 0644, is public), so the group reaches nothing else.
const (
	forwardAuthSocketMode = 0o660
	forwardAuthDirMode    = 0o710
)

// listenForwardAuthSocket listens on the unix socket path for the proxy:
// mode 0660, group gid (or, when -1, the group of the socket's directory).
// Whatever the mode, the socket serves nothing the HTTPS listener does not
// serve to anyone.
func listenForwardAuthSocket(path string, gid int, dataDir string, log *slog.Logger) (net.Listener, error) {
	path, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(path)
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	dirInfo, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	explicit := gid >= 0
	if !explicit {
		gid = int(dirInfo.Sys().(*syscall.Stat_t).Gid)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (net.Listener, error) {
		ln.Close() // also removes the socket
		return nil, err
	}
	if err := os.Chown(path, -1, gid); err != nil {
		if explicit {
			return fail(fmt.Errorf("giving the socket to --forward-auth-group (the service must run as root or be a member of the group): %w", err))
		}
		log.Warn("forward auth: the socket keeps the service's own group", "socket", path, "err", err)
	}
	if err := os.Chmod(path, forwardAuthSocketMode); err != nil {
		return fail(err)
	}
	if data, err := filepath.Abs(dataDir); err == nil && data == dir {
		if err := os.Chown(dir, -1, gid); err != nil && explicit {
			return fail(fmt.Errorf("giving the data directory to --forward-auth-group: %w", err))
		}
		if err := os.Chmod(dir, forwardAuthDirMode); err != nil {
			return fail(err)
		}
	}
	if d := unreachableDir(dir, gid); d != "" {
		log.Warn("forward auth: the socket's group cannot reach it; let the group traverse this directory (chmod g+x or o+x), or put the socket elsewhere",
			"socket", path, "gid", gid, "directory", d)
	}
	return ln, nil
}

// removeStaleSocket removes a socket left at path by a crash. It refuses to
// remove anything that is not a socket (a mistyped path must not delete a
// file) or a socket another process still answers on.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket; remove it or choose another path", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("%s is in use by another process", path)
	}
	return os.Remove(path)
}

// unreachableDir returns the first directory from dir up to the root that a
// member of gid (who is not its owner) cannot traverse, or "".
func unreachableDir(dir string, gid int) string {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return d
		}
		st := fi.Sys().(*syscall.Stat_t)
		perm := fi.Mode().Perm()
		if perm&0o001 == 0 && (int(st.Gid) != gid || perm&0o010 == 0) {
			return d
		}
		if d == filepath.Dir(d) {
			return ""
		}
	}
}
