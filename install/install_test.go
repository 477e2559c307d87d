package install

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"vmsauth/install/installtest"
)

// userConfig is a user service on a pretend-systemd host.
func userConfig(t *testing.T, args ...string) Config {
	t.Helper()
	return Config{
		Name:        "vmsauth",
		DisplayName: "vmsauth",
		Description: "vmsauth login service",
		Executable:  "/usr/local/bin/vmsauth",
		Args:        append([]string{"serve"}, args...),
		DataDir:     filepath.Join(t.TempDir(), "data dir"),
		UserService: true,
		HasSystemd:  func() bool { return true },
	}
}

func newService(t *testing.T, c Config) *Service {
	t.Helper()
	s, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func unitPath(t *testing.T) string {
	t.Helper()
	return filepath.Join(os.Getenv("HOME"), ".config/systemd/user/vmsauth.service")
}

func assertCalls(t *testing.T, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("systemctl calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func assertNoFile(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s: want no file, stat says %v", path, err)
	}
}

func TestInstall(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		calls := installtest.FakeSystemctl(t)
		c := userConfig(t, "--listen=:9443", "--trusted-proxies=10.0.0.0/8, 192.168.0.0/16", `--analytic-licenses=a"b\c$d%e`)
		if err := newService(t, c).Install(); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(unitPath(t))
		if err != nil {
			t.Fatal(err)
		}
		unit := string(b)
		for _, want := range []string{
			`ExecStart="/usr/local/bin/vmsauth" "serve" "--listen=:9443" "--trusted-proxies=10.0.0.0/8, 192.168.0.0/16" "--analytic-licenses=a\"b\\c$$d%%e"` + "\n",
			"Restart=on-failure\n",
			"RestartSec=5\n",
			"RestartPreventExitStatus=3\n",
			"NoNewPrivileges=yes\n",
			"ProtectSystem=strict\n",
			"ProtectHome=yes\n",
			"PrivateTmp=yes\n",
			"LimitNOFILE=65536\n",
			`ReadWritePaths="` + c.DataDir + `"` + "\n",
			"After=network-online.target\n",
			"Wants=network-online.target\n",
			"WantedBy=default.target\n",
		} {
			if !strings.Contains(unit, want) {
				t.Errorf("unit lacks %q:\n%s", want, unit)
			}
		}
		for _, bad := range []string{"sysconfig", "EnvironmentFile", "RestartSec=120", "StateDirectory", "{{"} {
			if strings.Contains(unit, bad) {
				t.Errorf("unit has %q:\n%s", bad, unit)
			}
		}
		assertCalls(t, calls(), "enable --user vmsauth.service", "daemon-reload --user")
		if fi, err := os.Stat(c.DataDir); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
			t.Errorf("data dir: %v %v", fi, err)
		}
	})

	t.Run("DefaultDataDir", func(t *testing.T) {
		c := userConfig(t, "--data=/var/lib/vmsauth")
		c.DataDir = "/var/lib/vmsauth"
		c.UserService = false
		unit, err := Unit(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"StateDirectory=vmsauth\n", "StateDirectoryMode=0700\n", `ReadWritePaths="/var/lib/vmsauth"` + "\n", "WantedBy=multi-user.target\n"} {
			if !strings.Contains(unit, want) {
				t.Errorf("unit lacks %q:\n%s", want, unit)
			}
		}
	})

	t.Run("ErrAlreadyInstalled", func(t *testing.T) {
		calls := installtest.FakeSystemctl(t)
		c := userConfig(t)
		if err := newService(t, c).Install(); err != nil {
			t.Fatal(err)
		}
		before, _ := os.ReadFile(unitPath(t))
		c.Args = append(c.Args, "--listen=:1")
		if err := newService(t, c).Install(); !errors.Is(err, ErrAlreadyInstalled) {
			t.Fatalf("second install: %v, want ErrAlreadyInstalled", err)
		}
		after, _ := os.ReadFile(unitPath(t))
		if string(before) != string(after) {
			t.Error("the second install changed the unit")
		}
		assertCalls(t, calls(), "enable --user vmsauth.service", "daemon-reload --user")
	})

	t.Run("ErrNotRoot", func(t *testing.T) {
		calls := installtest.FakeSystemctl(t)
		c := userConfig(t)
		c.Name = "vmsauth-test-not-root" // a system unit path nobody has
		c.UserService = false
		c.IsRoot = func() bool { return false }
		s := newService(t, c)
		if err := s.Install(); !errors.Is(err, ErrNotRoot) {
			t.Fatalf("install: %v, want ErrNotRoot", err)
		}
		for _, f := range []func() error{s.Uninstall, s.Start, s.Stop, s.Restart} {
			if err := f(); !errors.Is(err, ErrNotRoot) {
				t.Errorf("got %v, want ErrNotRoot", err)
			}
		}
		assertNoFile(t, "/etc/systemd/system/vmsauth-test-not-root.service")
		assertNoFile(t, c.DataDir)
		assertCalls(t, calls())
	})

	t.Run("ErrNoSystemd", func(t *testing.T) {
		calls := installtest.FakeSystemctl(t)
		c := userConfig(t)
		c.HasSystemd = func() bool { return false }
		if _, err := New(c); !errors.Is(err, ErrNoSystemd) {
			t.Fatalf("New: %v, want ErrNoSystemd", err)
		}
		assertNoFile(t, unitPath(t))
		assertCalls(t, calls())
	})

	t.Run("EnableFails", func(t *testing.T) {
		calls := installtest.FakeSystemctl(t)
		t.Setenv("FAKE_FAIL", "enable")
		c := userConfig(t)
		err := newService(t, c).Install()
		if err == nil || !strings.Contains(err.Error(), "nothing was installed") {
			t.Fatalf("install: %v, want a failure saying nothing was installed", err)
		}
		assertNoFile(t, unitPath(t))
		assertNoFile(t, c.DataDir)
		// The rollback disabled and reloaded what the half install did.
		assertCalls(t, calls(), "enable --user vmsauth.service", "disable --user vmsauth.service", "daemon-reload --user")

		// And a retry starts clean instead of "already exists".
		t.Setenv("FAKE_FAIL", "")
		if err := newService(t, c).Install(); err != nil {
			t.Fatalf("retry: %v", err)
		}
	})

	t.Run("BadValues", func(t *testing.T) {
		calls := installtest.FakeSystemctl(t)
		for name, c := range map[string]Config{
			"newline":      userConfig(t, "--listen=:1\nExecStartPre=/bin/sh"),
			"relative":     func() Config { c := userConfig(t); c.DataDir = "data"; return c }(),
			"relative exe": func() Config { c := userConfig(t); c.Executable = "vmsauth"; return c }(),
		} {
			if err := newService(t, c).Install(); err == nil {
				t.Errorf("%s: install succeeded", name)
			}
		}
		assertNoFile(t, unitPath(t))
		assertCalls(t, calls())
	})
}

func TestUninstall(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		calls := installtest.FakeSystemctl(t)
		c := userConfig(t)
		s := newService(t, c)
		if err := s.Install(); err != nil {
			t.Fatal(err)
		}
		if err := s.Uninstall(); err != nil {
			t.Fatal(err)
		}
		assertNoFile(t, unitPath(t))
		if _, err := os.Stat(c.DataDir); err != nil {
			t.Errorf("the data directory must be kept: %v", err)
		}
		assertCalls(t, calls()[2:], "stop --user vmsauth.service", "disable --user vmsauth.service", "daemon-reload --user")
	})

	t.Run("ErrNotInstalled", func(t *testing.T) {
		calls := installtest.FakeSystemctl(t)
		s := newService(t, userConfig(t))
		if err := s.Uninstall(); !errors.Is(err, ErrNotInstalled) {
			t.Fatalf("uninstall: %v, want ErrNotInstalled", err)
		}
		assertCalls(t, calls())
	})
}

func TestStartStopRestart(t *testing.T) {
	calls := installtest.FakeSystemctl(t)
	s := newService(t, userConfig(t))
	if err := s.Start(); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("start before install: %v, want ErrNotInstalled", err)
	}
	if err := s.Install(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []func() error{s.Start, s.Stop, s.Restart} {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
	assertCalls(t, calls()[2:], "start --user vmsauth.service", "stop --user vmsauth.service", "restart --user vmsauth.service")

	t.Setenv("FAKE_FAIL", "start")
	if err := s.Start(); err == nil || !strings.Contains(err.Error(), "journalctl -u vmsauth") {
		t.Errorf("failed start: %v, want a pointer to the journal", err)
	}
}

func TestStatus(t *testing.T) {
	installtest.FakeSystemctl(t)
	s := newService(t, userConfig(t))
	check := func(want Status) {
		t.Helper()
		got, err := s.Status()
		if err != nil || got != want {
			t.Errorf("status = %v, %v; want %v", got, err, want)
		}
	}
	check(NotInstalled)
	if err := s.Install(); err != nil {
		t.Fatal(err)
	}
	check(Stopped)
	t.Setenv("FAKE_ACTIVE", "active")
	check(Running)
	t.Setenv("FAKE_ACTIVE", "failed")
	if _, err := s.Status(); err == nil {
		t.Error("a failed unit must be reported as an error")
	}
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/usr/bin/vmsauth": `"/usr/bin/vmsauth"`,
		"a b":              `"a b"`,
		`say "hi"`:         `"say \"hi\""`,
		`C:\x`:             `"C:\\x"`,
		"100%":             `"100%%"`,
		"$HOME":            `"$$HOME"`,
	} {
		if got := quoteArg(in); got != want {
			t.Errorf("quoteArg(%q) = %s, want %s", in, got, want)
		}
	}
	if got := quotePath("/srv/$x"); got != `"/srv/$x"` {
		t.Errorf("quotePath keeps '$' (systemd does not expand it there): got %s", got)
	}
}

func TestUnitHardening(t *testing.T) {
	c := userConfig(t)
	c.UserService = false
	c.User = "vmsauth"
	sandbox := []string{
		"UMask=0077\n", "PrivateDevices=yes\n", "ProtectKernelTunables=yes\n", "ProtectKernelModules=yes\n",
		"ProtectProc=invisible\n", "LockPersonality=yes\n", "MemoryDenyWriteExecute=yes\n", "RestrictNamespaces=yes\n",
		"RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n", "SystemCallFilter=@system-service\n", "SystemCallArchitectures=native\n",
	}
	t.Run("NoCapabilities", func(t *testing.T) {
		unit, err := Unit(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range append([]string{"\nUser=vmsauth\n", "\nGroup=vmsauth\n", "\nCapabilityBoundingSet=\n", "\nPrivateUsers=yes\n"}, sandbox...) {
			if !strings.Contains(unit, want) {
				t.Errorf("unit lacks %q:\n%s", want, unit)
			}
		}
		if strings.Contains(unit, "AmbientCapabilities") {
			t.Errorf("unit grants capabilities:\n%s", unit)
		}
	})
	t.Run("PortBelow1024", func(t *testing.T) {
		c := c
		c.Capabilities = []string{"CAP_NET_BIND_SERVICE"}
		unit, err := Unit(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range append([]string{"\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\n", "\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n"}, sandbox...) {
			if !strings.Contains(unit, want) {
				t.Errorf("unit lacks %q:\n%s", want, unit)
			}
		}
		// A capability held in a user namespace of its own does not bind
		// a port of the host's network.
		if strings.Contains(unit, "PrivateUsers") {
			t.Errorf("unit has PrivateUsers with a capability:\n%s", unit)
		}
	})
	t.Run("UserUnit", func(t *testing.T) {
		unit, err := Unit(userConfig(t))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(unit, "User=") || strings.Contains(unit, "Group=") {
			t.Errorf("a user unit runs as its user:\n%s", unit)
		}
	})
}

func TestAccountCanRead(t *testing.T) {
	dir := t.TempDir()
	me := os.Getuid()
	file := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755) // t.TempDir's parents may not be: judge the file alone below
	owner := &account{name: "owner", uid: me, gid: os.Getgid()}
	other := &account{name: "other", uid: me + 12345, gid: os.Getgid() + 12345}
	info, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if !owner.may(info, 0o4) {
		t.Error("the owner of a 0600 file may read it")
	}
	if other.may(info, 0o4) {
		t.Error("another user may not read a 0600 file")
	}
	os.Chmod(file, 0o644)
	info, _ = os.Stat(file)
	if !other.may(info, 0o4) {
		t.Error("anyone may read a 0644 file")
	}
	os.Chmod(file, 0o640)
	info, _ = os.Stat(file)
	same := &account{name: "group", uid: me + 1, gid: os.Getgid()}
	if !same.may(info, 0o4) || other.may(info, 0o4) {
		t.Error("0640: the file's group may read it, others not")
	}
	if err := owner.canRead(file); err != nil {
		t.Errorf("owner: %v", err)
	}
	// t.TempDir's parent is 0700: the file is readable, the way to it not.
	if err := other.canRead(file); err == nil || !strings.Contains(err.Error(), "the service user other cannot read it") {
		t.Errorf("other: %v, want a refusal", err)
	}
	if err := other.canRead(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing file must be an error")
	}
}

func TestTakeOver(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	outside := filepath.Join(dir, "outside")
	for _, p := range []string{data, filepath.Join(data, "sub")} {
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{outside, filepath.Join(data, "vmsauth.db"), filepath.Join(data, "sub", "f")} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(data, "link")); err != nil {
		t.Fatal(err)
	}
	a := &account{name: "svc", uid: 4321, gid: 4322}
	if err := a.takeOver(data); err != nil {
		t.Fatal(err)
	}
	uidOf := func(p string) (uint32, uint32) {
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		return st.Uid, st.Gid
	}
	for _, p := range []string{data, filepath.Join(data, "vmsauth.db"), filepath.Join(data, "sub"), filepath.Join(data, "sub", "f"), filepath.Join(data, "link")} {
		if u, g := uidOf(p); u != 4321 || g != 4322 {
			t.Errorf("%s: owner %d:%d, want 4321:4322", p, u, g)
		}
	}
	if u, _ := uidOf(outside); u != 0 {
		t.Errorf("the link's target outside was given away (owner %d)", u)
	}
	if err := a.takeOver(filepath.Join(dir, "missing")); err != nil {
		t.Errorf("a data directory systemd will make: %v", err)
	}
}
