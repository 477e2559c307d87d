package installtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"vmsauth/internal/testkit"
)

// Tests that need a real systemd boot Debian 12 in a container, as
// ../shared/LIBRARY-NOTES.md ("A real systemd") describes: a root file
// system made by debootstrap, booted by systemd-nspawn, entered with
// nsenter. They need root and those tools; elsewhere they skip, and under
// CI=true they fail instead, so that CI cannot pass without running them.

// RootfsEnv names a directory where DebianRoot keeps the root file system
// between runs (it takes about 45 s to make); without it each test makes
// its own in a temp dir.
const RootfsEnv = "VMSAUTH_TEST_ROOTFS"

// debianPackages are the minimal Debian (which has useradd) plus what a
// booted box needs: systemd as init, D-Bus for systemctl, ps and kill, and
// curl to try a service from inside.
const debianPackages = "systemd,systemd-sysv,dbus,procps,curl,ca-certificates"

// NeedContainer skips t unless this host can boot a container: root and
// debootstrap, systemd-nspawn and nsenter on PATH. Under CI=true it fails.
func NeedContainer(t testing.TB) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, tool := range []string{"debootstrap", "systemd-nspawn", "nsenter", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "needs " + strings.Join(missing, ", ") + " to boot Debian with systemd in a container (apt-get install debootstrap systemd-container)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// DebianRoot returns a Debian 12 root file system with systemd. It is made
// once in $VMSAUTH_TEST_ROOTFS when that is set (and reused after), else in
// a temp dir of t. Boot never writes to it, so one copy serves every test.
func DebianRoot(t testing.TB) string {
	t.Helper()
	NeedContainer(t)
	dir := os.Getenv(RootfsEnv)
	if dir == "" {
		dir = filepath.Join(t.TempDir(), "rootfs")
	}
	if _, err := os.Stat(filepath.Join(dir, "usr/lib/systemd/systemd")); err == nil {
		return dir
	}
	// Two test binaries may want it at once: one makes it, the other waits.
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "usr/lib/systemd/systemd")); err == nil {
		return dir
	}
	// Made beside and renamed, so a half-made tree is never taken as done.
	tmp := dir + ".new"
	os.RemoveAll(tmp)
	start := time.Now()
	out, err := exec.Command("debootstrap", "--variant=minbase", "--include="+debianPackages, "bookworm", tmp).CombinedOutput()
	if err != nil {
		os.RemoveAll(tmp)
		t.Fatalf("debootstrap: %v\n%s", err, tail(out, 2000))
	}
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatal(err)
	}
	t.Logf("debootstrap made %s in %v", dir, time.Since(start).Round(time.Second))
	return dir
}

// Machine is a booted container.
type Machine struct {
	t      testing.TB
	leader int // the container's systemd, as the host sees it
	cmd    *exec.Cmd
	log    *testkit.LogBuffer // nspawn's output: written by exec's copier, read by the test
}

// Boot boots root with systemd and waits until it is up. The root is
// overlaid by a tmpfs (--volatile=overlay), so what the test changes
// vanishes with the container and root stays as made. binds maps host
// directories to where the container sees them, read-only. The container
// has a network of its own with only loopback (--private-network): a
// service in it may listen on any port without meeting another test's, or
// another engineer's, on the host's loopback, which once answered a test's
// /healthz in place of its own service that had failed to bind the same
// port. Reach it from inside (Run curl). It is powered off at cleanup.
func Boot(t testing.TB, root string, binds map[string]string) *Machine {
	t.Helper()
	args := []string{"--register=no", "--keep-unit", "--console=passive", "--volatile=overlay", "--private-network", "-D", root, "-b"}
	for host, guest := range binds {
		args = append(args, "--bind-ro="+host+":"+guest)
	}
	// Without host systemd and D-Bus, nspawn cannot register the machine
	// (--register=no --keep-unit), and on a /run that is not a tmpfs it
	// refuses to clean /run/systemd/nspawn/propagate at exit. A tmpfs there
	// in a mount namespace of its own satisfies it and leaves the host's
	// mounts as they were: nothing to undo.
	script := `mkdir -p /run/systemd/nspawn && mount -t tmpfs tmpfs /run/systemd/nspawn && exec systemd-nspawn "$@"`
	cmd := exec.Command("sh", append([]string{"-c", script, "sh"}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS} // Go makes / private in it
	m := &Machine{t: t, cmd: cmd, log: &testkit.LogBuffer{}}
	cmd.Stdout, cmd.Stderr = m.log, m.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { m.powerOff(exited) })

	// A loaded CI machine boots slowly.
	deadline := time.Now().Add(120 * time.Second)
	last := "no container init yet"
	for {
		select {
		case <-exited:
			t.Fatalf("systemd-nspawn exited: %s", m.log)
		default:
		}
		// nspawn forks a helper that forks the container's init and exits:
		// the init is the child in a PID namespace of its own.
		m.leader = containerInit(cmd.Process.Pid)
		if m.leader != 0 {
			// "degraded" is up too: a unit of the minimal image failed.
			// Polled rather than --wait: before the container's D-Bus is up
			// systemctl fails at once, and --wait would need a bound of
			// its own anyway. "starting" goes on until every start job is
			// done, so the tests begin on a settled system.
			state, _ := m.Run("systemctl", "is-system-running")
			if state == "running" || state == "degraded" {
				return m
			}
			last = "systemctl is-system-running: " + state
		}
		if time.Now().After(deadline) {
			jobs, _ := m.Run("systemctl", "list-jobs", "--no-pager")
			t.Fatalf("container not up after 120 s (%s); jobs:\n%s\nnspawn: %s", last, jobs, m.log)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// containerInit is the child of pid that has a PID namespace other than
// ours, or 0.
func containerInit(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0
	}
	ours, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return 0
	}
	for _, f := range strings.Fields(string(b)) {
		if ns, err := os.Readlink("/proc/" + f + "/ns/pid"); err == nil && ns != ours {
			n, _ := strconv.Atoi(f)
			return n
		}
	}
	return 0
}

// powerOff asks systemd to power off, and kills the container by its PID
// when it has not gone within 20 s.
func (m *Machine) powerOff(exited <-chan struct{}) {
	if m.leader != 0 {
		m.Run("systemctl", "poweroff")
	}
	select {
	case <-exited:
		return
	case <-time.After(20 * time.Second):
	}
	m.t.Logf("container did not power off; killing nspawn (pid %d)", m.cmd.Process.Pid)
	m.cmd.Process.Kill()
	<-exited
}

// Run runs a command inside the container, in all its namespaces, and
// returns its output (stdout and stderr), trimmed.
func (m *Machine) Run(args ...string) (string, error) {
	return m.RunInput("", args...)
}

// RunInput is Run with stdin.
func (m *Machine) RunInput(stdin string, args ...string) (string, error) {
	cmd := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(m.leader), "-a"}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// MustRun is Run that fails t on an error.
func (m *Machine) MustRun(t testing.TB, args ...string) string {
	t.Helper()
	out, err := m.Run(args...)
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// HostPath is where the host reaches path of the container's file system.
func (m *Machine) HostPath(path string) string {
	return fmt.Sprintf("/proc/%d/root%s", m.leader, path)
}

// HostPID is the host's PID of a process the container numbers pid.
func (m *Machine) HostPID(pid int) (int, error) {
	matches, _ := filepath.Glob("/proc/[0-9]*/status")
	want := "\t" + strconv.Itoa(pid) + "\n"
	for _, status := range matches {
		b, err := os.ReadFile(status)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			// NSpid lists the PID in each namespace, the innermost last.
			if strings.HasPrefix(line, "NSpid:") && strings.HasSuffix(line+"\n", want) {
				f := strings.Fields(line)
				if len(f) > 2 && m.inContainer(f[1]) {
					return strconv.Atoi(f[1])
				}
			}
		}
	}
	return 0, fmt.Errorf("no host process for the container's pid %d", pid)
}

// inContainer reports whether the host's process pid shares the
// container's PID namespace.
func (m *Machine) inContainer(pid string) bool {
	a, err1 := os.Readlink("/proc/" + pid + "/ns/pid")
	b, err2 := os.Readlink("/proc/" + strconv.Itoa(m.leader) + "/ns/pid")
	return err1 == nil && err2 == nil && a == b
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
