package install

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"vmsauth/install/installtest"
)

// systemConfig is a system service on a pretend-systemd host, run as a
// pretend root, whose unit directories are temporary ones.
func systemConfig(t *testing.T) (c Config, etc, pkg string) {
	t.Helper()
	etc, pkg = t.TempDir(), t.TempDir()
	oldEtc, oldPkg := systemUnitDir, packageUnitDirs
	systemUnitDir, packageUnitDirs = etc, []string{filepath.Join(t.TempDir(), "none"), pkg}
	t.Cleanup(func() { systemUnitDir, packageUnitDirs = oldEtc, oldPkg })
	c = userConfig(t)
	c.UserService = false
	c.IsRoot = func() bool { return true }
	return c, etc, pkg
}

// With the .deb, the unit is the package's: start, stop and status act on
// it, and install and uninstall leave it to apt.
func TestPackagedUnit(t *testing.T) {
	calls := installtest.FakeSystemctl(t)
	c, etc, pkg := systemConfig(t)
	if err := os.WriteFile(filepath.Join(pkg, "vmsauth.service"), []byte("[Service]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newService(t, c)
	if st, err := s.Status(); err != nil || st != Stopped {
		t.Errorf("status of the package's stopped unit = %v, %v; want stopped", st, err)
	}
	if err := s.Start(); err != nil {
		t.Errorf("start of the package's unit: %v", err)
	}
	if err := s.Install(); !errors.Is(err, ErrPackaged) {
		t.Errorf("install over the package's unit: %v, want ErrPackaged", err)
	}
	if err := s.Uninstall(); !errors.Is(err, ErrPackaged) {
		t.Errorf("uninstall of the package's unit: %v, want ErrPackaged", err)
	}
	assertNoFile(t, filepath.Join(etc, "vmsauth.service"))
	assertCalls(t, calls(), "is-active vmsauth.service", "list-unit-files -t service vmsauth.service", "start vmsauth.service")
}

// apt remove leaves a mask (a link to /dev/null) where the unit was: that
// is no unit, and install replaces it with its own.
func TestInstallOverMask(t *testing.T) {
	installtest.FakeSystemctl(t)
	c, etc, _ := systemConfig(t)
	unit := filepath.Join(etc, "vmsauth.service")
	if err := os.Symlink(os.DevNull, unit); err != nil {
		t.Fatal(err)
	}
	s := newService(t, c)
	if st, err := s.Status(); err != nil || st != NotInstalled {
		t.Errorf("status under the mask = %v, %v; want not installed", st, err)
	}
	if err := s.Install(); err != nil {
		t.Fatalf("install over the mask: %v", err)
	}
	if fi, err := os.Lstat(unit); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("after install the unit is %v, %v; want a regular file", fi, err)
	}
	if err := s.Install(); !errors.Is(err, ErrAlreadyInstalled) {
		t.Errorf("second install: %v, want ErrAlreadyInstalled", err)
	}
}
