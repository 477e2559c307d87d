package cli

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"vmsauth/install/installtest"
)

// TestSystemdService installs the freshly built binary as a service on
// Debian 12 booted with systemd in a container and uses it as an installer
// would. It needs root, debootstrap and systemd-nspawn: CI has them.
func TestSystemdService(t *testing.T) {
	root := installtest.DebianRoot(t)
	bin := binary(t)
	m := installtest.Boot(t, root, nil)
	vms := "/usr/local/bin/vmsauth"
	exe, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	// The container's root is overlaid: this lands in its tmpfs, not in root.
	if err := os.WriteFile(m.HostPath(vms), exe, 0o755); err != nil {
		t.Fatal(err)
	}

	t.Run("DefaultDataDir", func(t *testing.T) {
		port := freePort(t, 1024, 65535)
		out := m.MustRun(t, vms, "install", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--bcrypt-cost=12")
		if !strings.Contains(out, "runs as user vmsauth") {
			t.Errorf("install says %q", out)
		}
		if sh := m.MustRun(t, "getent", "passwd", "vmsauth"); !regexp.MustCompile(`^vmsauth:x:\d{3}:\d+:[^:]*:/var/lib/vmsauth:/usr/sbin/nologin$`).MatchString(sh) {
			t.Errorf("the service user: %q, want a system account without login shell", sh)
		}
		m.MustRun(t, vms, "start")
		base := fmt.Sprintf("https://127.0.0.1:%d", port)
		waitHealthy(t, base)
		pid := mainPID(t, m)
		if user := m.MustRun(t, "ps", "-o", "user=", "-p", strconv.Itoa(pid)); user != "vmsauth" {
			t.Errorf("the service runs as %q, want vmsauth", user)
		}
		if caps := m.MustRun(t, "grep", "^CapEff", fmt.Sprintf("/proc/%d/status", pid)); !strings.HasSuffix(caps, "0000000000000000") {
			t.Errorf("the service holds capabilities: %s", caps)
		}
		if exposure(t, m) > 2.0 {
			t.Error(m.MustRun(t, "systemd-analyze", "security", "vmsauth", "--no-pager"))
		}

		// Root's CLI beside the running service goes over its socket.
		if out, err := m.RunInput("Alice-password-1\n", vms, "user", "add", "--login", "alice", "--data", serviceDataDir); err != nil {
			t.Fatalf("user add beside the service: %v: %s", err, out)
		}
		if ls := m.MustRun(t, "stat", "-c", "%U %a", serviceDataDir+"/vmsauth.sock", serviceDataDir+"/vmsauth.db"); ls != "vmsauth 600\nvmsauth 600" {
			t.Errorf("socket and database: %q, want both vmsauth's, 0600", ls)
		}
		hashesAtNice10(t, m, pid)

		// A crash is followed by a restart 5 s later, with the data kept.
		m.MustRun(t, "kill", "-9", strconv.Itoa(pid))
		deadline := time.Now().Add(30 * time.Second)
		for mainPID(t, m) == 0 || mainPID(t, m) == pid {
			if time.Now().After(deadline) {
				t.Fatalf("no restart 30 s after kill -9: %s", m.MustRun(t, "systemctl", "status", "vmsauth", "--no-pager"))
			}
			time.Sleep(250 * time.Millisecond)
		}
		waitHealthy(t, base)
		if out := m.MustRun(t, vms, "user", "show", "alice", "--data", serviceDataDir); !strings.Contains(out, "alice") {
			t.Errorf("after the restart, user show alice: %q", out)
		}

		m.MustRun(t, vms, "uninstall")
		if _, err := m.Run("test", "-e", "/etc/systemd/system/vmsauth.service"); err == nil {
			t.Error("uninstall left the unit")
		}
		m.MustRun(t, "test", "-s", serviceDataDir+"/vmsauth.db")
	})

	t.Run("OldRootOwnedDataDir", func(t *testing.T) {
		// An older version ran as root: its data directory is root's, 0700.
		data := "/srv/vmsauth"
		if out, err := m.RunInput("Bob-password-12\n", vms, "user", "add", "--login", "bob", "--data", data); err != nil {
			t.Fatalf("user add: %v: %s", err, out)
		}
		if own := m.MustRun(t, "stat", "-c", "%U", data, data+"/vmsauth.db"); own != "root\nroot" {
			t.Fatalf("before install: %q, want root's", own)
		}
		// A key the service user could not read is refused at install.
		m.MustRun(t, "sh", "-c", "mkdir -p /etc/vmsauth && umask 077 && touch /etc/vmsauth/cert.pem /etc/vmsauth/key.pem")
		out, err := m.Run(vms, "install", "--data", data, "--tls-cert", "/etc/vmsauth/cert.pem", "--tls-key", "/etc/vmsauth/key.pem")
		if err == nil || !strings.Contains(out, "the service user vmsauth cannot read it") || !strings.Contains(out, "nothing was installed") {
			t.Errorf("install with a key only root reads: %v, %q; want a refusal", err, out)
		}
		if _, err := m.Run("test", "-e", "/etc/systemd/system/vmsauth.service"); err == nil {
			t.Fatal("the refused install left a unit")
		}

		// A port below 1024 needs CAP_NET_BIND_SERVICE, and only that.
		port := freePort(t, 600, 1023)
		m.MustRun(t, vms, "install", "--data", data, "--listen", fmt.Sprintf("127.0.0.1:%d", port))
		if own := m.MustRun(t, "find", data, "!", "-user", "vmsauth"); own != "" {
			t.Errorf("install left files to others: %q", own)
		}
		unit := m.MustRun(t, "cat", "/etc/systemd/system/vmsauth.service")
		for _, want := range []string{"\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\n", "\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n"} {
			if !strings.Contains(unit, want) {
				t.Errorf("unit lacks %q", want)
			}
		}
		m.MustRun(t, vms, "start")
		base := fmt.Sprintf("https://127.0.0.1:%d", port)
		waitHealthy(t, base)
		if exposure(t, m) > 2.0 {
			t.Error(m.MustRun(t, "systemd-analyze", "security", "vmsauth", "--no-pager"))
		}
		m.MustRun(t, vms, "backup", "/root/before.db", "--data", data)

		// With the service stopped, root's restore writes a new database
		// file: it must go to the service, or the next start fails.
		m.MustRun(t, vms, "stop")
		m.MustRun(t, vms, "restore", "/root/before.db", "--data", data)
		if own := m.MustRun(t, "stat", "-c", "%U", data+"/vmsauth.db"); own != "vmsauth" {
			t.Errorf("restored database owned by %q, want vmsauth", own)
		}
		m.MustRun(t, vms, "start")
		waitHealthy(t, base)
		if out := m.MustRun(t, vms, "user", "show", "bob", "--data", data); !strings.Contains(out, "bob") {
			t.Errorf("user show bob: %q", out)
		}
		m.MustRun(t, vms, "uninstall")
	})
}

// freePort finds a loopback TCP port in [lo, hi] nobody listens on.
func freePort(t *testing.T, lo, hi int) int {
	t.Helper()
	for p := lo; p <= hi; p++ {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err == nil {
			ln.Close()
			return p
		}
	}
	t.Fatalf("no free port in %d-%d", lo, hi)
	return 0
}

// waitHealthy waits up to 20 s for /healthz to answer 200.
func waitHealthy(t *testing.T, base string) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // the service's self-signed certificate
	}}
	var last string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		res, err := client.Get(base + "/healthz")
		if err != nil {
			last = err.Error()
			continue
		}
		res.Body.Close()
		if res.StatusCode == http.StatusOK {
			return
		}
		last = res.Status
	}
	t.Fatalf("%s/healthz: %s", base, last)
}

// mainPID is the service's main process as the container numbers it, or 0.
func mainPID(t *testing.T, m *installtest.Machine) int {
	t.Helper()
	n, err := strconv.Atoi(m.MustRun(t, "systemctl", "show", "-p", "MainPID", "--value", "vmsauth"))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

var exposureRE = regexp.MustCompile(`Overall exposure level for vmsauth\.service: ([0-9.]+)`)

// exposure is systemd-analyze security's figure for the unit.
func exposure(t *testing.T, m *installtest.Machine) float64 {
	t.Helper()
	out := m.MustRun(t, "systemd-analyze", "security", "vmsauth", "--no-pager")
	match := exposureRE.FindStringSubmatch(out)
	if match == nil {
		t.Fatalf("no exposure figure in:\n%s", out)
	}
	f, err := strconv.ParseFloat(match[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("systemd-analyze security vmsauth: %s", match[0])
	return f
}

// hashesAtNice10 changes a password through the service, which hashes it on
// a worker thread, and watches the service's threads from the host: the
// worker must lower its priority under the unit's system call filter and
// without root (it then lands at nice 10; see auth/priority_linux.go).
func hashesAtNice10(t *testing.T, m *installtest.Machine, pid int) {
	t.Helper()
	host, err := m.HostPID(pid)
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan bool, 1)
	stop := make(chan struct{})
	go func() {
		defer close(seen)
		for {
			select {
			case <-stop:
				return
			default:
			}
			tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", host))
			for _, task := range tasks {
				b, err := os.ReadFile(task)
				// The fields after the command name: nice is the 17th.
				if i := strings.LastIndexByte(string(b), ')'); err == nil && i > 0 {
					if f := strings.Fields(string(b[i+1:])); len(f) > 16 && f[16] == "10" {
						seen <- true
						return
					}
				}
			}
		}
	}()
	for i := 0; i < 5; i++ {
		if out, err := m.RunInput("Alice-password-2\n", "/usr/local/bin/vmsauth", "user", "passwd", "alice", "--data", serviceDataDir); err != nil {
			t.Fatalf("user passwd: %v: %s", err, out)
		}
		select {
		case <-seen:
			close(stop)
			return
		default:
		}
	}
	close(stop)
	if !<-seen {
		t.Errorf("no thread of the service (host pid %d) ran at nice 10 while it hashed; journal:\n%s", host, m.MustRun(t, "journalctl", "-u", "vmsauth", "--no-pager"))
	}
}
