package web

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// DefaultMaxConnsPerIP is how many connections one client address may hold
// open at once. A client app needs a few; a browser opens about six.
const DefaultMaxConnsPerIP = 64

// ConnLimit caps the connections each client address holds at once: an
// idle keep-alive TLS connection costs the box about 33 KB, so without a
// cap one address could hold thousands.
type ConnLimit struct {
	// Max is the most connections one address holds at once (IPv6: one
	// /64, which a single client usually has whole); 0 means no cap.
	Max int
	// Exempt are the peers never capped: loopback and trusted reverse
	// proxies, which carry many clients' connections.
	Exempt []netip.Prefix
	// Logger gets a line a minute at most while connections are refused;
	// default slog.Default().
	Logger *slog.Logger
}

// refusalLogEvery spaces the warnings about refused connections, so that a
// flood of them does not become a flood of log lines.
const refusalLogEvery = time.Minute

// LimitConns wraps ln so that each client address holds at most lim.Max
// connections. An extra one is closed as soon as it is accepted, before any
// TLS handshake: the cheapest refusal there is. Addresses are the TCP
// peer's, never a header's.
func LimitConns(ln net.Listener, lim ConnLimit) net.Listener {
	if lim.Max <= 0 {
		return ln
	}
	if lim.Logger == nil {
		lim.Logger = slog.Default()
	}
	return &limitListener{Listener: ln, lim: lim, open: make(map[netip.Prefix]int)}
}

type limitListener struct {
	net.Listener
	lim ConnLimit

	mu      sync.Mutex
	open    map[netip.Prefix]int // live connections by client address
	refused int                  // since the last warning
	logged  time.Time
}

// Accept returns the next connection within its address's cap, closing
// those over it.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key, capped := l.key(c.RemoteAddr())
		if !capped {
			return c, nil
		}
		if l.acquire(key) {
			return &limitedConn{Conn: c, release: func() { l.release(key) }}, nil
		}
		c.Close()
	}
}

// key returns the address a connection counts against, and false for an
// exempt peer (or one that is not TCP).
func (l *limitListener) key(a net.Addr) (netip.Prefix, bool) {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Prefix{}, false
	}
	ip := tcp.AddrPort().Addr().Unmap()
	for _, p := range l.lim.Exempt {
		if p.Contains(ip) {
			return netip.Prefix{}, false
		}
	}
	return addrKey(ip), true
}

// addrKey is what one client is counted as: an IPv4 address, or an IPv6
// /64 (a host usually gets a whole /64 and can pick any address in it).
func addrKey(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32)
	}
	p, _ := ip.WithZone("").Prefix(64)
	return p
}

func (l *limitListener) acquire(key netip.Prefix) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[key] < l.lim.Max {
		l.open[key]++
		return true
	}
	l.refused++
	if now := time.Now(); now.Sub(l.logged) >= refusalLogEvery {
		l.lim.Logger.Warn("connections refused: too many open from one address",
			"addr", key.String(), "max", l.lim.Max, "refused", l.refused)
		l.refused, l.logged = 0, now
	}
	return false
}

func (l *limitListener) release(key netip.Prefix) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[key] <= 1 {
		delete(l.open, key)
		return
	}
	l.open[key]--
}

// limitedConn gives its place back when closed, once.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
