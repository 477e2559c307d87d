package cli

import (
	"fmt"
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
		cleanUp(t, m, "test ! -e /etc/systemd/system/vmsauth.service || "+vms+" uninstall")
		port := 8443 // the container's loopback is its own: any port is free
		out := m.MustRun(t, vms, "install", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--bcrypt-cost=12")
		if !strings.Contains(out, "runs as user vmsauth") {
			t.Errorf("install says %q", out)
		}
		if sh := m.MustRun(t, "getent", "passwd", "vmsauth"); !regexp.MustCompile(`^vmsauth:x:\d{3}:\d+:[^:]*:/var/lib/vmsauth:/usr/sbin/nologin$`).MatchString(sh) {
			t.Errorf("the service user: %q, want a system account without login shell", sh)
		}
		m.MustRun(t, vms, "start")
		base := fmt.Sprintf("https://127.0.0.1:%d", port)
		pid := waitService(t, m, base, 0)
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
		waitService(t, m, base, pid)
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
		cleanUp(t, m, "test ! -e /etc/systemd/system/vmsauth.service || "+vms+" uninstall")
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
		port := 600
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
		waitService(t, m, base, 0)
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
		waitService(t, m, base, 0)
		if out := m.MustRun(t, vms, "user", "show", "bob", "--data", data); !strings.Contains(out, "bob") {
			t.Errorf("user show bob: %q", out)
		}
		m.MustRun(t, vms, "uninstall")
	})
}

// waitService waits until systemd says the vmsauth service is active and
// running with a main process other than not (0: any), and its /healthz,
// asked from inside the container, answers 200 while that process is still
// the main one. It returns that PID. Its bound is generous: a loaded CI
// machine starts the service slowly, and the test waits for the event, not
// for a time. Callers register logOnFailure, which says what systemd and
// the service said.
func waitService(t *testing.T, m *installtest.Machine, base string, not int) int {
	t.Helper()
	var last string
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		pid, state := serviceState(m)
		last = state
		if pid != 0 && pid != not && state == "active/running" {
			code, err := m.Run("curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", base+"/healthz")
			if again, _ := serviceState(m); code == "200" && again == pid {
				return pid
			}
			last = fmt.Sprintf("%s, pid %d, /healthz: %s %v", state, pid, code, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the service (not pid %d) not up and healthy at %s after 60 s: %s (logOnFailure shows its status and journal)", not, base, last)
		}
	}
}

// serviceState is the service's main PID (0 when none) and its
// ActiveState/SubState as systemd has them.
func serviceState(m *installtest.Machine) (int, string) {
	out, err := m.Run("systemctl", "show", "-p", "MainPID,ActiveState,SubState", "vmsauth")
	if err != nil {
		return 0, fmt.Sprintf("systemctl show: %v: %s", err, out)
	}
	p := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			p[k] = v
		}
	}
	pid, _ := strconv.Atoi(p["MainPID"])
	return pid, p["ActiveState"] + "/" + p["SubState"]
}

// mainPID is the service's main process as the container numbers it, or 0.
func mainPID(t *testing.T, m *installtest.Machine) int {
	t.Helper()
	pid, _ := serviceState(m)
	return pid
}

// serviceLog is what systemd and the service's journal say, for a failure.
func serviceLog(m *installtest.Machine) string {
	status, _ := m.Run("systemctl", "status", "vmsauth", "--no-pager", "-l")
	journal, _ := m.Run("journalctl", "-u", "vmsauth", "--no-pager", "-n", "50")
	return "systemctl status vmsauth:\n" + status + "\njournalctl -u vmsauth:\n" + journal
}

// cleanUp runs undo (a shell command) in the container when t ends, even
// when it failed, so that one failed subtest does not fail the next with
// "already installed"; and when t failed, it first logs the service's
// status and journal (logOnFailure).
func cleanUp(t *testing.T, m *installtest.Machine, undo string) {
	t.Cleanup(func() {
		if out, err := m.Run("sh", "-c", undo); err != nil && !t.Failed() {
			t.Errorf("%s: %v: %s", undo, err, out)
		}
	})
	logOnFailure(t, m)
}

// logOnFailure logs the service's status and journal when t has failed,
// so that a CI log says why the service was not there.
func logOnFailure(t *testing.T, m *installtest.Machine) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(serviceLog(m))
		}
	})
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
