//go:build linux

package main

import (
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
	"time"
)

// etcdtest starts members the same way, but it takes a testing.TB (it
// fails the test and registers cleanups), so this tool has its own small
// launcher: three members on free loopback ports, data in a temporary
// directory, stopped by PID.

// cluster is a running etcd cluster.
type cluster struct {
	members []*member
	hc      *http.Client // for /health; with TLS, one that trusts the CA
}

type member struct {
	name, clientURL, peerURL string
	logPath                  string
	cmd                      *exec.Cmd
	done                     chan struct{}
}

// memberArgs gives the flags of member i besides names, URLs and data; the
// TLS check (tls_test.go) adds its certificates there.
type memberArgs func(i int) []string

// startCluster starts n members with data under dir and waits until each is
// healthy. scheme is the client URLs' (http or https); peers use peerScheme.
func startCluster(bin, dir string, n int, scheme, peerScheme string, extra memberArgs, hc *http.Client) (*cluster, error) {
	addrs, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	c := &cluster{hc: hc}
	var initial []string
	for i := range n {
		m := &member{name: fmt.Sprintf("m%d", i+1),
			clientURL: scheme + "://" + addrs[2*i], peerURL: peerScheme + "://" + addrs[2*i+1]}
		c.members = append(c.members, m)
		initial = append(initial, m.name+"="+m.peerURL)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	token := fmt.Sprintf("sitebench-%d-%d", os.Getpid(), time.Now().UnixNano())
	for i, m := range c.members {
		data := filepath.Join(dir, m.name)
		m.logPath = data + ".log"
		args := []string{"--name", m.name, "--data-dir", data,
			"--listen-client-urls", m.clientURL, "--advertise-client-urls", m.clientURL,
			"--listen-peer-urls", m.peerURL, "--initial-advertise-peer-urls", m.peerURL,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", token}
		if extra != nil {
			args = append(args, extra(i)...)
		}
		if err := m.launch(bin, args, nil); err != nil {
			c.stop()
			return nil, err
		}
	}
	for _, m := range c.members {
		if err := c.waitHealthy(m, 30*time.Second); err != nil {
			c.stop()
			return nil, err
		}
	}
	return c, nil
}

// launch starts the member on a goroutine locked to its thread until the
// member exits: Pdeathsig fires when the starting *thread* ends (see
// etcdtest), and it makes the kernel kill etcd if this tool dies. env, if
// not nil, is added to this process's environment (etcd reads ETCD_*).
func (m *member) launch(bin string, args, env []string) error {
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	started := make(chan error, 1)
	m.done = make(chan struct{})
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
		close(m.done)
	}()
	if err := <-started; err != nil {
		logf.Close()
		return err
	}
	m.cmd = cmd
	return nil
}

func (c *cluster) waitHealthy(m *member, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case <-m.done:
			return fmt.Errorf("etcd %s exited: %s", m.name, tail(m.logPath, 8))
		default:
		}
		if res, err := c.hc.Get(m.clientURL + "/health"); err == nil {
			var h struct{ Health string }
			json.NewDecoder(res.Body).Decode(&h)
			res.Body.Close()
			if h.Health == "true" {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("etcd %s not healthy after %s: %s", m.name, limit, tail(m.logPath, 8))
}

func (c *cluster) endpoints() string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.clientURL)
	}
	return strings.Join(eps, ",")
}

// stop stops every member by its PID: SIGTERM, then SIGKILL after 5 s.
func (c *cluster) stop() {
	for _, m := range c.members {
		if m.cmd == nil {
			continue
		}
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.done:
		case <-time.After(5 * time.Second):
			_ = m.cmd.Process.Kill()
			<-m.done
		}
	}
}

func freePorts(n int) ([]string, error) {
	var addrs []string
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
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

// requests returns the gRPC requests the members handled so far, summed
// over them, by method (Range, Txn, LeaseGrant, ...), from their /metrics:
// the JSON gateway's calls are counted there too.
func (c *cluster) requests() (map[string]float64, error) {
	out := map[string]float64{}
	for _, m := range c.members {
		res, err := c.hc.Get(m.clientURL + "/metrics")
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			return nil, err
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			if !strings.HasPrefix(line, "grpc_server_handled_total{") {
				continue
			}
			_, rest, _ := strings.Cut(line, `grpc_method="`)
			method, _, _ := strings.Cut(rest, `"`)
			_, v, _ := strings.Cut(line, "} ")
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				out[method] += f
			}
		}
	}
	return out, nil
}
