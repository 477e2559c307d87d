package cli

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"vmsauth/install/installtest"
)

// nobody stands for the service user: any uid but root's.
const nobody = 65534

func ownerOf(t *testing.T, path string) uint32 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Uid
}

// TestRootCommandsKeepServiceOwnership runs commands as root, with the
// service stopped, on a data directory the service user owns: what they
// create there must be the service's, or its next start fails.
func TestRootCommandsKeepServiceOwnership(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: it checks what root's commands leave behind")
	}
	data := t.TempDir()
	if err := os.Chown(data, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	// A file outside, hard-linked in by the directory's owner, must stay root's.
	outside := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(outside, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(outside, filepath.Join(data, "link")); err != nil {
		t.Fatal(err)
	}

	env := envOf("VMSAUTH_BCRYPT_COST", "4")
	if code, _, stderr := cli(t, env, "Alice-password-1", "user", "add", "--login", "alice", "--data", data, "--bcrypt-cost", "4"); code != 0 {
		t.Fatalf("user add: exit %d: %s", code, stderr)
	}
	if u := ownerOf(t, filepath.Join(data, databaseFile)); u != nobody {
		t.Errorf("the database root made: owner %d, want the directory's (%d)", u, nobody)
	}
	backup := filepath.Join(data, "copy.db")
	if code, _, stderr := cli(t, env, "", "backup", backup, "--data", data); code != 0 {
		t.Fatalf("backup: exit %d: %s", code, stderr)
	}
	if code, _, stderr := cli(t, env, "", "restore", backup, "--data", data); code != 0 {
		t.Fatalf("restore: exit %d: %s", code, stderr)
	}
	for _, name := range []string{databaseFile, "copy.db", databaseFile + ".before-restore"} {
		if u := ownerOf(t, filepath.Join(data, name)); u != nobody {
			t.Errorf("%s: owner %d, want %d", name, u, nobody)
		}
	}
	if u := ownerOf(t, outside); u != 0 {
		t.Errorf("a file hard-linked in from outside was given away (owner %d)", u)
	}

	// A directory of root's own is left as it is.
	mine := t.TempDir()
	if code, _, stderr := cli(t, env, "Bob-password-12", "user", "add", "--login", "bob", "--data", mine, "--bcrypt-cost", "4"); code != 0 {
		t.Fatalf("user add: exit %d: %s", code, stderr)
	}
	if u := ownerOf(t, filepath.Join(mine, databaseFile)); u != 0 {
		t.Errorf("in root's own directory: owner %d, want 0", u)
	}
}

func TestInstallCommandCapabilities(t *testing.T) {
	installtest.FakeSystemctl(t)
	host := pretendHost(true, false, true)
	for _, tc := range []struct {
		listen string
		caps   bool
	}{{":443", true}, {"127.0.0.1:https", true}, {":8443", false}, {":0", false}} {
		data := t.TempDir()
		code, _, stderr := cliOn(t, host, envOf(), "install", "--listen", tc.listen, "--data", data)
		if code != 0 {
			t.Fatalf("install --listen %s: exit %d: %s", tc.listen, code, stderr)
		}
		b, err := os.ReadFile(userUnit(t))
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Contains(string(b), "\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n")
		if got != tc.caps || !strings.Contains(string(b), "\nCapabilityBoundingSet=") {
			t.Errorf("--listen %s: CAP_NET_BIND_SERVICE granted %v, want %v:\n%s", tc.listen, got, tc.caps, b)
		}
		if code, _, stderr := cliOn(t, host, envOf(), "uninstall"); code != 0 {
			t.Fatalf("uninstall: %s", stderr)
		}
	}
}

func TestInstallCommandRefusesForeignDataDir(t *testing.T) {
	calls := installtest.FakeSystemctl(t)
	host := pretendHost(true, false, true)
	data := t.TempDir()
	if err := os.WriteFile(filepath.Join(data, "notes.txt"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := cliOn(t, host, envOf(), "install", "--data", data)
	oneLine(t, code, stderr, "holds files but no vmsauth.db")
	noFile(t, userUnit(t))
	if c := calls(); c != nil {
		t.Errorf("systemctl was called: %q", c)
	}
	// One a vmsauth service used is taken.
	if err := os.WriteFile(filepath.Join(data, databaseFile), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := cliOn(t, host, envOf(), "install", "--data", data); code != 0 {
		t.Errorf("install on a vmsauth data directory: exit %d: %s", code, stderr)
	}
}
