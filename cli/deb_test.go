package cli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"vmsauth/install/installtest"
)

// TestDebianPackage builds the .deb of this host's architecture as `make
// deb` does and uses it on Debian 12 booted with systemd in a container, as
// an installer would: apt install, edit /etc/default/vmsauth, start, remove,
// reinstall, upgrade, purge. The container has no network but loopback, so
// apt must find every dependency installed. It needs root, debootstrap and
// systemd-nspawn (CI has them), and the Go module proxy for nfpm.
func TestDebianPackage(t *testing.T) {
	root := installtest.DebianRoot(t)
	arch := map[string]string{"amd64": "amd64", "arm64": "arm64", "arm": "armhf"}[runtime.GOARCH]
	if arch == "" {
		t.Skipf("no Debian package for %s", runtime.GOARCH)
	}
	dir := t.TempDir()
	deb := debPackage(t, dir, arch, "0198e53")
	// The same tree, one commit later: the upgrade.
	newer := debPackage(t, filepath.Join(dir, "newer"), arch, "0198e53-dirty")

	m := installtest.Boot(t, root, nil)
	// The container's root is overlaid: these land in its tmpfs, not in root.
	for _, f := range []string{deb, newer} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(m.HostPath("/root/"+filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	apt := func(args ...string) string {
		t.Helper()
		// cd: apt install takes a local package by a path with a slash.
		cmd := "cd /root && DEBIAN_FRONTEND=noninteractive apt -y " + strings.Join(args, " ")
		return m.MustRun(t, "sh", "-c", cmd)
	}
	is := func(verb string) string {
		out, _ := m.Run("systemctl", verb, "vmsauth") // non-zero when not enabled or not active
		return out
	}
	data := serviceDataDir
	logOnFailure(t, m)

	// A data directory that a root-run vmsauth left is taken over, but no
	// file outside it through a link.
	m.MustRun(t, "sh", "-c", "install -d -m 0755 "+data+" && touch "+data+"/old && ln -s /etc/shadow "+data+"/link")
	out := apt("install", "./"+filepath.Base(deb))
	t.Logf("apt install:\n%s", out)
	if got := is("is-enabled"); got != "enabled" {
		t.Errorf("after install the service is %q, want enabled", got)
	}
	if got := is("is-active"); got != "inactive" {
		t.Errorf("after install the service is %q, want inactive: the package must not start it", got)
	}
	if sh := m.MustRun(t, "getent", "passwd", "vmsauth"); !regexp.MustCompile(`^vmsauth:x:\d{3}:\d+:vmsauth service:/var/lib/vmsauth:/usr/sbin/nologin$`).MatchString(sh) {
		t.Errorf("the service user: %q, want the system account vmsauth install makes", sh)
	}
	if got := m.MustRun(t, "stat", "-c", "%U %G %a", data, "/etc/default/vmsauth"); got != "vmsauth vmsauth 700\nroot root 600" {
		t.Errorf("data directory and settings: %q", got)
	}
	if got := m.MustRun(t, "find", data, "/etc/shadow", "!", "-user", "vmsauth"); got != "/etc/shadow" {
		t.Errorf("files not vmsauth's after the takeover: %q, want only /etc/shadow", got)
	}
	unit := m.MustRun(t, "cat", "/lib/systemd/system/vmsauth.service")
	// vmsauth's own service commands act on the package's unit, and leave
	// installing and removing it to apt.
	if got := m.MustRun(t, "vmsauth", "status"); got != "stopped" {
		t.Errorf("vmsauth status after apt install: %q, want stopped", got)
	}
	if out, err := m.Run("vmsauth", "uninstall"); err == nil || !strings.Contains(out, "apt remove vmsauth") {
		t.Errorf("vmsauth uninstall of the package's unit: %v: %q, want a refusal naming apt remove", err, out)
	}

	// The installer's settings, then a start.
	port := 8443 // the container's loopback is its own: any port is free
	base := fmt.Sprintf("https://127.0.0.1:%d", port)
	m.MustRun(t, "sh", "-c", fmt.Sprintf("echo VMSAUTH_LISTEN=127.0.0.1:%d >> /etc/default/vmsauth", port))
	m.MustRun(t, "systemctl", "start", "vmsauth")
	pid := waitService(t, m, base, 0)
	if user := m.MustRun(t, "ps", "-o", "user=", "-p", strconv.Itoa(pid)); user != "vmsauth" {
		t.Errorf("the service runs as %q, want vmsauth", user)
	}
	m.MustRun(t, "test", "-s", data+"/initial-admin-password")
	if out, err := m.RunInput("Alice-password-1\n", "vmsauth", "user", "add", "--login", "alice", "--data", data); err != nil {
		t.Fatalf("user add: %v: %s", err, out)
	}

	// An upgrade restarts the running service on the new binary.
	// try-restart has waited for the restart (Type=simple): the main PID is
	// already the new one, or 0 if it failed to start.
	apt("install", "./"+filepath.Base(newer))
	if got := mainPID(t, m); got == pid {
		t.Errorf("after the upgrade the service's pid is %d (was %d): not restarted", got, pid)
	}
	waitService(t, m, base, pid)
	if v := m.MustRun(t, "dpkg-query", "-W", "-f", "${Version}", "vmsauth"); !strings.HasSuffix(v, ".dirty") {
		t.Errorf("after the upgrade dpkg has version %q", v)
	}

	// remove stops and disables it and keeps data, settings and user.
	apt("remove", "vmsauth")
	if got := is("is-active"); got == "active" {
		t.Error("the service still runs after apt remove")
	}
	if got := is("is-enabled"); got == "enabled" {
		t.Error("the service is still enabled after apt remove")
	}
	m.MustRun(t, "test", "!", "-e", "/usr/bin/vmsauth")
	m.MustRun(t, "test", "-s", data+"/vmsauth.db")
	m.MustRun(t, "grep", "-q", "^VMSAUTH_LISTEN=", "/etc/default/vmsauth")
	m.MustRun(t, "getent", "passwd", "vmsauth")
	// A reinstall takes up where it was: enabled, not started, same data.
	apt("install", "./"+filepath.Base(deb))
	if got := is("is-enabled"); got != "enabled" {
		t.Errorf("after the reinstall the service is %q, want enabled", got)
	}
	if got := is("is-active"); got != "inactive" {
		t.Errorf("after the reinstall the service is %q, want inactive", got)
	}
	m.MustRun(t, "systemctl", "start", "vmsauth")
	waitService(t, m, base, 0)
	if out := m.MustRun(t, "vmsauth", "user", "show", "alice", "--data", data); !strings.Contains(out, "alice") {
		t.Errorf("after remove and reinstall, user show alice: %q", out)
	}

	// A port below 1024, with the drop-in the README gives for it.
	low := 600
	m.MustRun(t, "sh", "-c", fmt.Sprintf(`set -e
mkdir -p /etc/systemd/system/vmsauth.service.d
printf '[Service]\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\nAmbientCapabilities=CAP_NET_BIND_SERVICE\nPrivateUsers=no\n' > /etc/systemd/system/vmsauth.service.d/low-port.conf
sed -i 's/^VMSAUTH_LISTEN=.*/VMSAUTH_LISTEN=127.0.0.1:%d/' /etc/default/vmsauth
systemctl daemon-reload
systemctl restart vmsauth`, low))
	waitService(t, m, fmt.Sprintf("https://127.0.0.1:%d", low), 0)
	m.MustRun(t, "rm", "-r", "/etc/systemd/system/vmsauth.service.d")

	// purge removes the package, its settings, its enablement and the data.
	apt("purge", "vmsauth")
	if got := is("is-active"); got == "active" {
		t.Error("the service still runs after apt purge")
	}
	if out, err := m.Run("dpkg-query", "-W", "-f", "${db:Status-Status}", "vmsauth"); err == nil && out != "not-installed" {
		t.Errorf("after purge dpkg says %q", out)
	}
	for _, gone := range []string{data, "/etc/default/vmsauth", "/lib/systemd/system/vmsauth.service",
		"/etc/systemd/system/vmsauth.service", "/etc/systemd/system/multi-user.target.wants/vmsauth.service"} {
		if _, err := m.Run("test", "-e", gone, "-o", "-L", gone); err == nil {
			t.Errorf("%s is left after apt purge", gone)
		}
	}

	// The package's unit is the one `vmsauth install` writes for the same
	// binary, with the settings file added.
	exe, err := os.ReadFile(binary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(m.HostPath("/usr/bin/vmsauth"), exe, 0o755); err != nil {
		t.Fatal(err)
	}
	m.MustRun(t, "/usr/bin/vmsauth", "install")
	installed := m.MustRun(t, "cat", "/etc/systemd/system/vmsauth.service")
	if want := strings.Replace(unit, "EnvironmentFile=-/etc/default/vmsauth\n", "", 1); installed != want {
		t.Errorf("the package's unit, without EnvironmentFile=:\n%s\nvmsauth install's:\n%s", want, installed)
	}

	// The mask apt remove leaves is no unit: vmsauth install, of a binary
	// kept elsewhere, writes its own unit over it.
	m.MustRun(t, "/usr/bin/vmsauth", "uninstall")
	if err := os.Rename(m.HostPath("/usr/bin/vmsauth"), m.HostPath("/usr/local/bin/vmsauth")); err != nil {
		t.Fatal(err)
	}
	apt("install", "./"+filepath.Base(deb))
	apt("remove", "vmsauth")
	if got := m.MustRun(t, "vmsauth", "status"); got != "not installed" {
		t.Errorf("vmsauth status after apt remove: %q, want not installed", got)
	}
	m.MustRun(t, "vmsauth", "install")
	if got := m.MustRun(t, "stat", "-c", "%F", "/etc/systemd/system/vmsauth.service"); got != "regular file" {
		t.Errorf("after vmsauth install over the mask the unit is a %s", got)
	}
}

// debPackage builds vmsauth for arch, statically as `make release` does,
// and packages it as `make deb` does, with the version git describe would
// give for describe. It returns the .deb's path.
func debPackage(t *testing.T, dir, arch, describe string) string {
	t.Helper()
	goarch := map[string]string{"amd64": "amd64", "arm64": "arm64", "armhf": "arm"}[arch]
	dist := filepath.Join(dir, "dist")
	if err := os.MkdirAll(dist, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(binary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dist, "vmsauth-linux-"+goarch), b, 0o755); err != nil {
		t.Fatal(err)
	}
	build := filepath.Join(dir, "deb-build")
	run := func(args ...string) {
		t.Helper()
		start := time.Now()
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("%s (%v)", strings.Join(args[:3], " "), time.Since(start).Round(time.Millisecond))
	}
	run("go", "run", moduleRoot+"/tools/deb", "-src", filepath.Join(moduleRoot, "tools/deb"), "-describe", describe, "-date", "2026-11-29T08:00:00Z",
		"-dist", dist, "-out", build, "-arches", arch)
	run(append(nfpmCommand(t), "package", "--config", filepath.Join(build, "nfpm-"+arch+".json"),
		"--packager", "deb", "--target", dist)...)
	debs, _ := filepath.Glob(filepath.Join(dist, "vmsauth_*_"+arch+".deb"))
	if len(debs) != 1 {
		t.Fatalf("nfpm made %v, want one vmsauth_*_%s.deb", debs, arch)
	}
	return debs[0]
}

// nfpmCommand is the Makefile's NFPM, so the test packages with the
// version the release does.
func nfpmCommand(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(moduleRoot, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	match := regexp.MustCompile(`(?m)^NFPM = (.+)$`).FindSubmatch(b)
	if match == nil {
		t.Fatal("no NFPM = line in the Makefile")
	}
	return strings.Fields(string(match[1]))
}
