package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vmsauth/install/installtest"
)

const systemUnit = "/etc/systemd/system/vmsauth.service"

// pretendHost is a view of the host for the service commands: a user
// unit or a system one, root or not, systemd or not.
func pretendHost(user, root, systemd bool) serviceHost {
	return serviceHost{user: user, isRoot: func() bool { return root }, hasSystemd: func() bool { return systemd }}
}

// cliOn runs one command to completion with the service commands acting
// on host.
func cliOn(t *testing.T, host serviceHost, getenv func(string) string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(context.Background(), args, Env{Getenv: getenv, Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, host: host})
	return code, out.String(), errb.String()
}

func userUnit(t *testing.T) string {
	t.Helper()
	return filepath.Join(os.Getenv("HOME"), ".config/systemd/user/vmsauth.service")
}

// oneLine checks that a refusal is a single line saying want.
func oneLine(t *testing.T, code int, stderr, want string) {
	t.Helper()
	if code != 1 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, want) {
		t.Errorf("exit %d, stderr %q; want 1 and one line with %q", code, stderr, want)
	}
}

func noFile(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s: want no file, stat says %v", path, err)
	}
}

func TestInstallCommandRefuses(t *testing.T) {
	if _, err := os.Stat(systemUnit); err == nil {
		t.Skip(systemUnit + " exists on this host; these tests check it is not written")
	}

	t.Run("NoSystemdOnThisHost", func(t *testing.T) {
		// The real checks: this only means something where systemd is absent.
		if _, err := os.Stat("/run/systemd/system"); err == nil {
			t.Skip("this host runs systemd")
		}
		code, _, stderr := cli(t, envOf(), "", "install")
		oneLine(t, code, stderr, "vmsauth: install: no systemd on this host (/run/systemd/system is missing); run `vmsauth serve` under your init system instead")
		noFile(t, systemUnit)
	})

	t.Run("ErrNoSystemd", func(t *testing.T) {
		calls := installtest.FakeSystemctl(t)
		host := pretendHost(false, true, false)
		for _, action := range []string{"install", "uninstall", "start", "stop", "restart", "status"} {
			code, _, stderr := cliOn(t, host, envOf(), action)
			oneLine(t, code, stderr, "no systemd on this host")
		}
		noFile(t, systemUnit)
		if c := calls(); c != nil {
			t.Errorf("systemctl was called: %q", c)
		}
	})

	t.Run("ErrNotRoot", func(t *testing.T) {
		calls := installtest.FakeSystemctl(t)
		host := pretendHost(false, false, true)
		code, _, stderr := cliOn(t, host, envOf(), "install", "--listen", ":9443")
		oneLine(t, code, stderr, "vmsauth: install: needs root (run it with sudo)")
		noFile(t, systemUnit)
		if c := calls(); c != nil {
			t.Errorf("systemctl was called: %q", c)
		}
	})

	t.Run("BadServeFlag", func(t *testing.T) {
		calls := installtest.FakeSystemctl(t)
		host := pretendHost(true, false, true)
		for _, tc := range []struct {
			args []string
			code int
			want string
		}{
			{[]string{"--listne", ":9443"}, 2, "-listne"},
			{[]string{"--throttle-window", "1ms"}, 1, "--throttle-window"},
			{[]string{"--listen", "9443"}, 1, "--listen"},
			{[]string{"--data", "data"}, 1, `--data "data": the service needs an absolute path`},
			{[]string{"--data", "/home/me/vmsauth"}, 1, "ProtectHome"},
			{[]string{"--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key"}, 1, "--tls-cert"},
			{[]string{"--print-config"}, 1, "--print-config"},
		} {
			code, _, stderr := cliOn(t, host, envOf(), append([]string{"install"}, tc.args...)...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Errorf("install %q: exit %d, stderr %q; want %d naming %q", tc.args, code, stderr, tc.code, tc.want)
			}
		}
		noFile(t, userUnit(t))
		if c := calls(); c != nil {
			t.Errorf("systemctl was called: %q", c)
		}
	})

	t.Run("EnableFails", func(t *testing.T) {
		installtest.FakeSystemctl(t)
		t.Setenv("FAKE_FAIL", "enable")
		host := pretendHost(true, false, true)
		code, _, stderr := cliOn(t, host, envOf(), "install")
		oneLine(t, code, stderr, "nothing was installed")
		noFile(t, userUnit(t))
	})
}

func TestInstallCommand(t *testing.T) {
	calls := installtest.FakeSystemctl(t)
	host := pretendHost(true, false, true)
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err != nil {
		t.Fatal(err)
	}

	// The environment is not baked into the unit: the service won't see it.
	code, stdout, stderr := cliOn(t, host, envOf("VMSAUTH_LISTEN", ":1"), "install",
		"--listen", ":9443", "--trusted-proxies", "10.0.0.0/8, 192.168.1.0/24", "--captcha=false")
	if code != 0 {
		t.Fatalf("install: exit %d, stderr %q", code, stderr)
	}
	if !strings.Contains(stdout, userUnit(t)) {
		t.Errorf("install output %q does not name the unit", stdout)
	}
	b, err := os.ReadFile(userUnit(t))
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	wantExec := `ExecStart="` + exe + `" "serve" "--captcha=false" "--data=/var/lib/vmsauth" "--listen=:9443" "--trusted-proxies=10.0.0.0/8, 192.168.1.0/24"` + "\n"
	for _, want := range []string{wantExec, "Restart=on-failure\n", "NoNewPrivileges=yes\n", "ProtectSystem=strict\n",
		`ReadWritePaths="/var/lib/vmsauth"` + "\n", "StateDirectory=vmsauth\n"} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
	if strings.Contains(unit, "sysconfig") {
		t.Errorf("unit reads /etc/sysconfig:\n%s", unit)
	}

	code, _, stderr = cliOn(t, host, envOf(), "install")
	oneLine(t, code, stderr, "already installed ("+userUnit(t)+"); run `vmsauth uninstall` first")

	status := func(want string) {
		t.Helper()
		if code, stdout, stderr := cliOn(t, host, envOf(), "status"); code != 0 || stdout != want+"\n" {
			t.Errorf("status: exit %d, stdout %q, stderr %q; want %q", code, stdout, stderr, want)
		}
	}
	status("stopped")
	t.Setenv("FAKE_ACTIVE", "active")
	status("running")

	for _, action := range []string{"start", "stop", "restart", "uninstall"} {
		if code, _, stderr := cliOn(t, host, envOf(), action); code != 0 {
			t.Fatalf("%s: exit %d, stderr %q", action, code, stderr)
		}
	}
	noFile(t, userUnit(t))
	status("not installed")

	want := []string{
		"enable --user vmsauth.service", "daemon-reload --user",
		"is-active vmsauth.service --user", "list-unit-files -t service vmsauth.service --user",
		"is-active vmsauth.service --user",
		"start --user vmsauth.service", "stop --user vmsauth.service", "restart --user vmsauth.service",
		"stop --user vmsauth.service", "disable --user vmsauth.service", "daemon-reload --user",
	}
	if got := calls(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("systemctl calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	code, _, stderr = cliOn(t, host, envOf(), "start")
	oneLine(t, code, stderr, "not installed; run `vmsauth install` first")
}

func TestInstallCommandDataDir(t *testing.T) {
	installtest.FakeSystemctl(t)
	host := pretendHost(true, false, true)
	data := filepath.Join(t.TempDir(), "my data") + "/"
	if code, _, stderr := cliOn(t, host, envOf(), "install", "--data="+data); code != 0 {
		t.Fatalf("install: exit %d, stderr %q", code, stderr)
	}
	b, err := os.ReadFile(userUnit(t))
	if err != nil {
		t.Fatal(err)
	}
	clean := filepath.Clean(data)
	for _, want := range []string{`"--data=` + clean + `"`, `ReadWritePaths="` + clean + `"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("unit lacks %q:\n%s", want, b)
		}
	}
	if strings.Contains(string(b), "StateDirectory") {
		t.Errorf("StateDirectory is only for /var/lib/vmsauth:\n%s", b)
	}
	if fi, err := os.Stat(clean); err != nil || !fi.IsDir() {
		t.Errorf("data directory not made: %v", err)
	}
}
