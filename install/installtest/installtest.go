// Package installtest gives tests of the service commands a systemd: a
// fake systemctl on PATH that logs its calls instead of touching the host,
// or a real one, Debian 12 booted in a container (DebianRoot, Boot).
package installtest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FakeSystemctl puts a systemctl on PATH that logs its arguments, one call
// a line, answers is-active with $FAKE_ACTIVE and fails the subcommand
// named in $FAKE_FAIL. HOME becomes a temp dir, so user units land there.
// It returns a function reading the log.
func FakeSystemctl(t testing.TB) func() []string {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "calls.log")
	script := `#!/bin/sh
echo "$*" >> "$FAKE_LOG"
case "$1" in
is-active) echo "${FAKE_ACTIVE:-inactive}" ;;
list-unit-files) echo "vmsauth.service enabled" ;;
esac
[ "$1" = "$FAKE_FAIL" ] && exit 1
exit 0
`
	if err := os.WriteFile(filepath.Join(dir, "systemctl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("HOME", t.TempDir())
	t.Setenv("FAKE_LOG", log)
	t.Setenv("FAKE_ACTIVE", "")
	t.Setenv("FAKE_FAIL", "")
	return func() []string {
		b, err := os.ReadFile(log)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}
}
