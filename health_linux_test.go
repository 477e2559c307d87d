package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestHealthzWhileWritesFail makes the service's writes fail for real, as
// a full disk would: RLIMIT_FSIZE set on the running process at two pages
// refuses every write past bbolt's two meta pages (EFBIG), and bbolt
// writes a transaction's data pages before its meta page, so each commit
// fails whole and the file stays sound. /healthz must say so until a write
// succeeds again.
func TestHealthzWhileWritesFail(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	p := startDurable(t, dir)
	if code, out := vmsauth(t, durablePassword+"\n", "user", "add", "--data", dir, "--login", "cam1", "--api", "integration"); code != 0 {
		t.Fatalf("user add: %s", out)
	}
	health := func() (int, string) {
		t.Helper()
		res, err := http.Get(p.url + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		var v struct{ Reason string }
		json.Unmarshal(b, &v)
		return res.StatusCode, v.Reason
	}
	if code, _ := health(); code != http.StatusOK {
		t.Fatalf("healthz before: %d", code)
	}

	pid := p.cmd.Process.Pid
	limit := func(n uint64) {
		t.Helper()
		if err := unix.Prlimit(pid, unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: n, Max: unix.RLIM_INFINITY}, nil); err != nil {
			t.Fatal(err)
		}
	}
	limit(uint64(2 * os.Getpagesize()))
	if _, status, err := durableLogin(http.DefaultClient, p.url, "integration", "cam1"); status != http.StatusInternalServerError {
		t.Fatalf("a login whose write fails: %d %v", status, err)
	}
	if code, reason := health(); code != http.StatusServiceUnavailable || reason != "database write failed" {
		t.Fatalf("healthz while writes fail = %d %q, want 503 \"database write failed\"", code, reason)
	}

	limit(unix.RLIM_INFINITY)
	if _, _, err := durableLogin(http.DefaultClient, p.url, "integration", "cam1"); err != nil {
		t.Fatalf("a login once the disk has room again: %v", err)
	}
	if code, reason := health(); code != http.StatusOK {
		t.Fatalf("healthz after a write succeeded again = %d %q", code, reason)
	}
	p.cmd.Process.Signal(unix.SIGTERM)
	err := <-p.done
	p.done <- err
	if err != nil {
		t.Fatalf("serve after the failed writes: %v\n%s", err, p.out)
	}
	if code, out := vmsauth(t, "", "backup", "--data", dir, filepath.Join(t.TempDir(), "b.db")); code != 0 {
		t.Fatalf("the file is not sound after the failed writes: %s", out)
	}
}
