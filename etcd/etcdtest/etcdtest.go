// Package etcdtest starts real etcd clusters (Debian's etcd-server, the
// etcd binary on PATH) for tests: one or three members on free loopback
// ports, data in the test's temporary directory, stopped by PID when the
// test ends. It can kill, stop and restart a member (for the failure tests:
// one member down, two down is no majority) and turn on etcd's auth. It
// speaks to etcd with plain net/http, so it does not depend on the client it
// helps to test. A test that needs etcd skips without it, and fails under
// CI=true, where .ci/run installs it.
package etcdtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Options shape a cluster. The zero value is one member.
type Options struct {
	Members int // 1 if zero
	// AuthTokenTTL is etcd's --auth-token-ttl in seconds (300 if zero): a
	// simple token expires that long after its last use.
	AuthTokenTTL int
	// TLS serves the client URLs over https with a certificate from a CA
	// made for the cluster, and asks clients for a certificate from it
	// (--client-cert-auth). The files are in Cluster.CAFile, CertFile and
	// KeyFile. Members speak to each other over plain http.
	TLS bool
}

// Cluster is a running etcd cluster.
type Cluster struct {
	t       testing.TB
	bin     string
	dir     string
	opts    Options
	hc      *http.Client // for the harness's own requests
	Members []*Member
	// With Options.TLS: the CA that signed the members' certificates, and
	// a client certificate and key it signed too.
	CAFile, CertFile, KeyFile string
}

// Member is one etcd process. ClientURL is what clients use.
type Member struct {
	Name      string
	ClientURL string
	PeerURL   string
	dataDir   string
	logPath   string
	args      []string
	cmd       *exec.Cmd
	done      chan struct{} // closed when the process has exited
}

// Binary returns the path of etcd, or skips the test (fails it under
// CI=true) when there is none.
func Binary(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("etcd is not installed (Debian package etcd-server); CI must run this test")
		}
		t.Skip("etcd is not installed (apt-get install etcd-server)")
	}
	return bin
}

// Start starts a cluster and waits until every member is healthy (it has a
// leader). The cluster is stopped when the test ends.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Members <= 0 {
		opts.Members = 1
	}
	c := &Cluster{t: t, bin: Binary(t), dir: t.TempDir(), opts: opts, hc: &http.Client{Timeout: 2 * time.Second}}
	t.Cleanup(c.cleanup)
	scheme := "http"
	if opts.TLS {
		tc, err := c.makeCerts()
		if err != nil {
			t.Fatalf("etcdtest: certificates: %v", err)
		}
		c.hc.Transport = &http.Transport{TLSClientConfig: tc}
		scheme = "https"
	}
	// Free ports are found by listening on port 0 and closing; another
	// process may take one before etcd binds it, so a start that fails on
	// a taken port is tried again on new ports.
	var err error
	for attempt := 1; attempt <= 4; attempt++ {
		if err = c.start(attempt, scheme); err == nil {
			return c
		}
		c.stopAll()
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	t.Fatalf("etcdtest: starting %d members: %v", opts.Members, err)
	return nil
}

func (c *Cluster) start(attempt int, scheme string) error {
	n := c.opts.Members
	ports, err := freePorts(2 * n)
	if err != nil {
		return err
	}
	token := fmt.Sprintf("etcdtest-%d-%d", os.Getpid(), time.Now().UnixNano())
	c.Members = nil
	var initial []string
	for i := 0; i < n; i++ {
		m := &Member{
			Name:      fmt.Sprintf("m%d", i+1),
			ClientURL: fmt.Sprintf("%s://127.0.0.1:%d", scheme, ports[2*i]),
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
		}
		m.dataDir = filepath.Join(c.dir, fmt.Sprintf("try%d", attempt), m.Name)
		m.logPath = m.dataDir + ".log"
		c.Members = append(c.Members, m)
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	for _, m := range c.Members {
		m.args = []string{
			"--name", m.Name, "--data-dir", m.dataDir,
			"--listen-client-urls", m.ClientURL, "--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", m.PeerURL, "--initial-advertise-peer-urls", m.PeerURL,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", token,
		}
		if c.opts.AuthTokenTTL > 0 {
			m.args = append(m.args, "--auth-token-ttl", strconv.Itoa(c.opts.AuthTokenTTL))
		}
		if c.opts.TLS {
			m.args = append(m.args, "--cert-file", filepath.Join(c.dir, "server.pem"),
				"--key-file", filepath.Join(c.dir, "server-key.pem"),
				"--trusted-ca-file", c.CAFile, "--client-cert-auth")
		}
		if err := os.MkdirAll(filepath.Dir(m.dataDir), 0o700); err != nil {
			return err
		}
		if err := c.launch(m); err != nil {
			return err
		}
	}
	for _, m := range c.Members {
		if err := c.waitHealthy(m, 20*time.Second); err != nil {
			return err
		}
	}
	return nil
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func (c *Cluster) launch(m *Member) error {
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(c.bin, m.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so a ^C to the test does not reach it first
	// and the cleanup stops it by PID.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	dieWithTest(cmd.SysProcAttr)
	// Linux sends the death signal when the *thread* that started the
	// member ends, not the process, and Go ends a thread whose goroutine
	// exits locked to it (vmsauth's bcrypt workers do, to drop their
	// priority): a serve under test killed its own etcd cluster that way.
	// So the member is started and waited for on a thread of its own,
	// locked to this goroutine until the member has exited.
	started := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			runtime.UnlockOSThread()
			started <- err
			return
		}
		started <- nil
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	if err := <-started; err != nil {
		logf.Close()
		return err
	}
	m.cmd, m.done = cmd, done
	return nil
}

// waitHealthy polls the member's /health until it reports a leader.
func (c *Cluster) waitHealthy(m *Member, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case <-m.done:
			return fmt.Errorf("%s exited: %s", m.Name, tail(m.logPath, 5))
		default:
		}
		resp, err := c.hc.Get(m.ClientURL + "/health")
		if err == nil {
			var h struct{ Health string }
			json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			if h.Health == "true" {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not healthy after %s: %s", m.Name, limit, tail(m.logPath, 5))
}

// Endpoints returns the members' client URLs, in member order.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.Members {
		eps = append(eps, m.ClientURL)
	}
	return eps
}

// Index returns the index of the member with this client URL, or -1.
func (c *Cluster) Index(clientURL string) int {
	for i, m := range c.Members {
		if m.ClientURL == clientURL {
			return i
		}
	}
	return -1
}

// Kill kills member i at once (SIGKILL), as a power cut would, and waits
// for it to be gone.
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	m := c.Members[i]
	if m.running() {
		m.cmd.Process.Signal(syscall.SIGKILL)
		<-m.done
	}
}

// Stop stops member i as a service manager would: SIGTERM, then SIGKILL
// after 5 seconds.
func (c *Cluster) Stop(i int) {
	c.Members[i].stop(5 * time.Second)
}

// Restart starts member i again on its data and ports, after Kill or Stop.
// It waits until the member is healthy, which needs a majority of members
// running.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	m := c.Members[i]
	if m.running() {
		c.t.Fatalf("etcdtest: %s is still running", m.Name)
	}
	if err := c.launch(m); err != nil {
		c.t.Fatalf("etcdtest: restarting %s: %v", m.Name, err)
	}
	if err := c.waitHealthy(m, 20*time.Second); err != nil {
		c.t.Fatalf("etcdtest: restarting %s: %v", m.Name, err)
	}
}

func (m *Member) running() bool {
	if m.cmd == nil {
		return false
	}
	select {
	case <-m.done:
		return false
	default:
		return true
	}
}

func (m *Member) stop(grace time.Duration) {
	if !m.running() {
		return
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(grace):
		m.cmd.Process.Signal(syscall.SIGKILL)
		<-m.done
	}
}

func (c *Cluster) stopAll() {
	for _, m := range c.Members {
		m.stop(3 * time.Second)
	}
}

func (c *Cluster) cleanup() {
	if c.t.Failed() {
		for _, m := range c.Members {
			c.t.Logf("etcdtest: last lines of %s's log:\n%s", m.Name, tail(m.logPath, 15))
		}
	}
	c.stopAll()
}

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// User is an etcd user that EnableAuth creates, with read and write on the
// keys starting with Prefix.
type User struct {
	Name, Password, Prefix string
}

// EnableAuth creates the root user (etcd wants it before auth is on) and
// the users, each with a role of its own on its prefix, then turns auth on.
func (c *Cluster) EnableAuth(rootPassword string, users ...User) {
	c.t.Helper()
	c.post("/v3/auth/user/add", map[string]any{"name": "root", "password": rootPassword})
	c.post("/v3/auth/role/add", map[string]any{"name": "root"})
	c.post("/v3/auth/user/grant", map[string]any{"user": "root", "role": "root"})
	for _, u := range users {
		role := u.Name + "-role"
		c.post("/v3/auth/user/add", map[string]any{"name": u.Name, "password": u.Password})
		c.post("/v3/auth/role/add", map[string]any{"name": role})
		c.post("/v3/auth/role/grant", map[string]any{"name": role, "perm": map[string]any{
			"permType": "READWRITE", "key": []byte(u.Prefix), "range_end": prefixEnd([]byte(u.Prefix))}})
		c.post("/v3/auth/user/grant", map[string]any{"user": u.Name, "role": role})
	}
	c.post("/v3/auth/enable", map[string]any{})
}

func (c *Cluster) post(path string, in any) {
	c.t.Helper()
	body, _ := json.Marshal(in)
	for _, m := range c.Members {
		if !m.running() {
			continue
		}
		resp, err := c.hc.Post(m.ClientURL+path, "application/json", bytes.NewReader(body))
		if err != nil {
			c.t.Fatalf("etcdtest: %s: %v", path, err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			c.t.Fatalf("etcdtest: %s: %s %s", path, resp.Status, data)
		}
		return
	}
	c.t.Fatalf("etcdtest: %s: no member running", path)
}

func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return []byte{0}
}
