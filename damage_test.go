package main

import (
	"bytes"
	bin "encoding/binary"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"vmsauth/internal/testkit"
)

// A damaged database must be refused, never repaired, served from or
// crashed on: each damage below is made to a real database (users,
// sessions on all three APIs, an audit trail), and serve, user list,
// audit and backup, each run as its own process, must refuse it with a
// clear error and a non-zero exit, without a panic, and leave every byte of
// it as it was.

// realDatabase runs the binary to make a database with a few users,
// sessions and audit entries, stops it, and returns the file's bytes.
func realDatabase(t *testing.T) []byte {
	t.Helper()
	dir := t.TempDir()
	url, serve := startProcess(t, dir)
	for _, login := range []string{"cam1", "cam2", "tech"} {
		if code, out := vmsauth(t, login+"-password\n", "user", "add", "--data", dir, "--login", login, "--api", "client,admin,integration"); code != 0 {
			t.Fatalf("user add %s: %s", login, out)
		}
		for _, call := range []struct{ path, body string }{
			{"/api/v1/token", `{"login":"` + login + `","password":"` + login + `-password"}`},
			{"/api/admin/v1/auth/token", `{"login":"` + login + `","password":"` + login + `-password"}`},
			{"/v1/login_check", `{"username":"` + login + `","password":"` + login + `-password"}`},
			{"/api/v1/token", `{"login":"` + login + `","password":"wrong-password"}`},
		} {
			postJSON(t, http.DefaultClient, url+call.path, call.body)
		}
	}
	serve.Process.Signal(syscall.SIGTERM)
	if err := serve.Wait(); err != nil {
		t.Fatalf("serve did not stop cleanly: %v", err)
	}
	data, err := os.ReadFile(filepath.Join(dir, databaseFile))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// treePages returns the page size of a bbolt file and the pages that head
// a branch or leaf in use: not free, not the free list, not the tail of a
// page that overflows. It reads the file as bbolt v1.5 lays it out (see
// store/file.go), without bbolt, which only store may import.
func treePages(t *testing.T, data []byte) (int, []int) {
	t.Helper()
	le := bin.LittleEndian
	ps := int(le.Uint32(data[16+8:]))
	meta := 0
	if le.Uint64(data[ps+16+48:]) > le.Uint64(data[16+48:]) { // the newer txid
		meta = ps
	}
	freelist, hwm := int(le.Uint64(data[meta+16+32:])), int(le.Uint64(data[meta+16+40:]))
	free := map[int]bool{freelist: true}
	p := data[freelist*ps:]
	count, ids := int(le.Uint16(p[10:])), p[16:]
	if count == 0xFFFF {
		count, ids = int(le.Uint64(ids)), ids[8:]
	}
	for i := range count {
		free[int(le.Uint64(ids[i*8:]))] = true
	}
	var pages []int
	for id := 2; id < hwm; id++ {
		h := data[id*ps:]
		if flags := le.Uint16(h[8:]); !free[id] && int(le.Uint64(h)) == id && (flags == 1 || flags == 2) {
			pages = append(pages, id)
		}
	}
	if len(pages) == 0 {
		t.Fatal("found no tree page in use")
	}
	return ps, pages
}

// middlePage is the tree page nearest the middle of the file.
func middlePage(t *testing.T, data []byte) (ps, id int) {
	ps, pages := treePages(t, data)
	mid := len(data) / ps / 2
	id = pages[0]
	for _, p := range pages {
		if abs(p-mid) < abs(id-mid) {
			id = p
		}
	}
	return ps, id
}

func abs(n int) int { return max(n, -n) }

var damages = []struct {
	name   string
	damage func(t *testing.T, data []byte) []byte
	want   string // in every refusal
}{
	// The reproduction of the issue: two bucket names damaged by one byte,
	// everywhere in the file; the pages themselves stay consistent.
	{"RenamedBuckets", func(t *testing.T, data []byte) []byte {
		data = bytes.ReplaceAll(data, []byte("users"), []byte("usera"))
		return bytes.ReplaceAll(data, []byte("usera_by_login"), []byte("users_by_logia"))
	}, "bucket users is missing"},
	// 32 bytes inverted right after the header of the tree page nearest
	// the middle of the file: its first elements.
	{"FlippedBytes", func(t *testing.T, data []byte) []byte {
		ps, id := middlePage(t, data)
		for i := id*ps + 16; i < id*ps+48; i++ {
			data[i] ^= 0xFF
		}
		return data
	}, "damaged"},
	{"ZeroedPage", func(t *testing.T, data []byte) []byte {
		ps, id := middlePage(t, data)
		clear(data[id*ps : (id+1)*ps])
		return data
	}, "damaged"},
	// Byte 100 of a meta page lies past its checksum, so the meta pages
	// still look valid and bbolt would trust what they point to.
	{"EveryPageByte100", func(t *testing.T, data []byte) []byte {
		ps, _ := treePages(t, data)
		for off := 0; off+100 < len(data); off += ps {
			data[off+100] ^= 0xFF
		}
		return data
	}, "damaged"},
}

func TestDamagedDatabaseRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	base := realDatabase(t)
	for _, d := range damages {
		t.Run(d.name, func(t *testing.T) {
			damaged := d.damage(t, bytes.Clone(base))
			if bytes.Equal(damaged, base) {
				t.Fatal("the damage changed nothing")
			}
			dir := t.TempDir()
			path := filepath.Join(dir, databaseFile)
			if err := os.WriteFile(path, damaged, 0o600); err != nil {
				t.Fatal(err)
			}
			refused := func(what string, code int, out string) {
				t.Helper()
				switch {
				case code == 0:
					t.Errorf("%s accepted the damaged file:\n%s", what, out)
				case crashed(code, out):
					t.Errorf("%s crashed:\n%s", what, out)
				case !strings.Contains(out, d.want) || !strings.Contains(out, "restore a backup"):
					t.Errorf("%s: the error does not say %q and to restore a backup:\n%s", what, d.want, out)
				}
				if now, _ := os.ReadFile(path); !bytes.Equal(now, damaged) {
					t.Fatalf("%s changed the damaged file", what)
				}
			}

			code, out := serveUntilExit(t, dir)
			refused("serve", code, out)
			if strings.Contains(out, "first admin") || strings.Contains(out, "database checked") {
				t.Errorf("serve went on with the damaged file:\n%s", out)
			}
			code, out = vmsauth(t, "", "user", "list", "--data", dir)
			refused("user list", code, out)
			code, out = vmsauth(t, "", "user", "show", "cam1", "--data", dir)
			refused("user show", code, out)
			code, out = vmsauth(t, "", "audit", "--data", dir)
			refused("audit", code, out)
			backup := filepath.Join(t.TempDir(), "backup.db")
			code, out = vmsauth(t, "", "backup", "--data", dir, backup)
			refused("backup", code, out)
			if _, err := os.Stat(backup); !os.IsNotExist(err) {
				t.Errorf("backup of a damaged file wrote %s: %v", backup, err)
			}
		})
	}
}

// crashed tells a Go crash (an unrecovered panic or fault: exit status 2
// and the stacks of the goroutines) from a clean refusal, which may quote a
// recovered panic in its message.
func crashed(code int, out string) bool {
	return code == 2 || goroutineRE.MatchString(out) || strings.Contains(out, "fatal error:")
}

var goroutineRE = regexp.MustCompile(`(?m)^goroutine \d+ \[`)

// serveUntilExit runs "vmsauth serve" on dir and returns its exit status
// and output; it fails the test if serve is still running after 30 s.
func serveUntilExit(t *testing.T, dir string) (int, string) {
	t.Helper()
	cmd := exec.Command(binary(t), "serve", "--data", dir, "--listen", "127.0.0.1:0", "--insecure-http")
	cmd.Env = procEnv()
	var out testkit.LogBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
		return cmd.ProcessState.ExitCode(), out.String()
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("serve did not stop on a damaged database:\n%s", out.String())
		return 0, ""
	}
}

// TestDamageWhileServing damages the file under a running service, as a
// failing disk would, and checks that the service stops cleanly, saying
// what to do, with the exit status of damage (which systemd can be told
// not to restart into), instead of crashing in whichever goroutine reads
// the damage first (here the audit writer, or the login's own).
func TestDamageWhileServing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	p := startDurable(t, dir)
	if code, out := vmsauth(t, durablePassword+"\n", "user", "add", "--data", dir, "--login", "cam1"); code != 0 {
		t.Fatalf("user add: %s", out)
	}
	if _, _, err := durableLogin(http.DefaultClient, p.url, "client", "cam1"); err != nil {
		t.Fatal(err)
	}

	path := filepath.Join(dir, databaseFile)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ps, pages := treePages(t, data)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range pages {
		if _, err := f.WriteAt(make([]byte, ps), int64(id*ps)); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()

	// A login attempt reads the users, writes a session and, within a
	// second, an audit entry.
	durableLogin(http.DefaultClient, p.url, "client", "cam1")
	select {
	case err := <-p.done:
		p.done <- err
	case <-time.After(20 * time.Second):
		t.Fatalf("serve goes on with a damaged database:\n%s", p.out)
	}
	out := p.out.String()
	if code := p.cmd.ProcessState.ExitCode(); code != exitDamaged || crashed(code, out) {
		t.Fatalf("serve ended with status %d, not a clean stop with status %d:\n%s", code, exitDamaged, out)
	}
	if !strings.Contains(out, "stopped") || !strings.Contains(out, "damaged") || !strings.Contains(out, "restore a backup") {
		t.Fatalf("serve did not say that the database is damaged and what to do:\n%s", out)
	}
}

// TestServeStopsWhenStartCheckFails damages a file where only the walk of
// every page can see it (the free list no longer lists a free page), so
// serve starts and then stops, when its check beside the start fails.
func TestServeStopsWhenStartCheckFails(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	data := realDatabase(t)
	le := bin.LittleEndian
	ps := int(le.Uint32(data[16+8:]))
	meta := 0
	if le.Uint64(data[ps+16+48:]) > le.Uint64(data[16+48:]) {
		meta = ps
	}
	count := data[int(le.Uint64(data[meta+16+32:]))*ps+10:]
	n := le.Uint16(count)
	if n == 0 || n == 0xFFFF {
		t.Fatalf("the free list lists %d pages; want a few", n)
	}
	le.PutUint16(count, n-1)
	dir := t.TempDir()
	path := filepath.Join(dir, databaseFile)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}

	code, out := serveUntilExit(t, dir)
	if code != exitDamaged || crashed(code, out) || !strings.Contains(out, "listening") ||
		!strings.Contains(out, "neither in use nor free") || !strings.Contains(out, "restore a backup") {
		t.Fatalf("serve on a file only the page check finds damaged: status %d\n%s", code, out)
	}
	if now, _ := os.ReadFile(path); !bytes.Equal(now, data) {
		t.Fatal("serve changed the damaged file")
	}
}

// TestNoAdminOnFileThatHeldUsers: the first admin is made only on a file
// that never held a user. One whose users were all deleted keeps its ids,
// and gets none: a stranger must not find a fresh admin on a box.
func TestNoAdminOnFileThatHeldUsers(t *testing.T) {
	dir := t.TempDir()
	getenv := envOf("VMSAUTH_DATA", dir, "VMSAUTH_BCRYPT_COST", "4", "VMSAUTH_ADMIN_PASSWORD", "admin-password")
	if code, out, errOut := cli(t, getenv, "cam1-password\n", "user", "add", "--login", "cam1"); code != 0 {
		t.Fatalf("user add: %s%s", out, errOut)
	}
	if code, out, errOut := cli(t, getenv, "", "user", "delete", "cam1"); code != 0 {
		t.Fatalf("user delete: %s%s", out, errOut)
	}
	_, out := startServe(t, getenv, "--insecure-http")
	if strings.Contains(out.String(), "first admin") || !strings.Contains(out.String(), "no users left") {
		t.Fatalf("serve on a file whose users were deleted:\n%s", out)
	}
}

// TestReadOnlyCommandsWriteNothing: the commands that only read open the
// file read-only when the service is stopped: not one byte changes.
func TestReadOnlyCommandsWriteNothing(t *testing.T) {
	dir := t.TempDir()
	getenv := envOf("VMSAUTH_DATA", dir, "VMSAUTH_BCRYPT_COST", "4")
	if code, out, errOut := cli(t, getenv, "cam1-password\n", "user", "add", "--login", "cam1"); code != 0 {
		t.Fatalf("user add: %s%s", out, errOut)
	}
	path := filepath.Join(dir, databaseFile)
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"user", "list"}, {"user", "show", "cam1"}, {"audit"}, {"backup", filepath.Join(t.TempDir(), "b.db")},
	} {
		if code, out, errOut := cli(t, getenv, "", args...); code != 0 {
			t.Fatalf("%v: %s%s", args, out, errOut)
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
			t.Fatalf("%v changed the database file", args)
		}
	}
	// With no database, they say so and make none.
	empty := t.TempDir()
	if code, _, errOut := cli(t, envOf("VMSAUTH_DATA", empty), "", "user", "list"); code != 1 || !strings.Contains(errOut, "no database") {
		t.Fatalf("user list without a database: %d %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(empty, databaseFile)); !os.IsNotExist(err) {
		t.Fatalf("user list made a database: %v", err)
	}
}
