package install

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
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
