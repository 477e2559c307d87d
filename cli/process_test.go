package cli

import (
	"bufio"
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// listenRE finds the URL in the line a served process logs when it listens.
var listenRE = regexp.MustCompile(`url=(https?://[^ \n]+)`)

// moduleRoot is the module's directory, seen from this package's: the
// command's main package and the Makefile are there.
const moduleRoot = ".."

// binary builds vmsauth once for the tests that run it as a real process.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vmsauth-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "vmsauth")
		// As released: static, so it also runs in the Debian container
		// of TestSystemdService whatever this host's C library.
		cmd := exec.Command("go", "build", "-o", binPath, moduleRoot)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = err
			binPath = string(out)
		}
	})
	if buildErr != nil {
		t.Fatalf("go build: %v\n%s", buildErr, binPath)
	}
	return binPath
}

// procEnv is the environment of every process these tests start.
func procEnv() []string {
	return append(os.Environ(), "VMSAUTH_BCRYPT_COST=4", "VMSAUTH_ADMIN_PASSWORD=admin-password", "VMSAUTH_CAPTCHA=false")
}

// startProcess runs "vmsauth serve" as a child process on dir and returns
// its base URL; the process is stopped with SIGTERM at cleanup.
func startProcess(t *testing.T, dir string) (string, *exec.Cmd) {
	t.Helper()
	cmd := exec.Command(binary(t), "serve", "--data", dir, "--listen", "127.0.0.1:0", "--insecure-http")
	cmd.Env = procEnv()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		}
	})
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				urls <- m[1]
			}
		}
	}()
	select {
	case u := <-urls:
		return u, cmd
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not start")
		return "", nil
	}
}

// vmsauth runs one command as its own process.
func vmsauth(t *testing.T, stdin string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Env = procEnv()
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, out.String()
}

func TestCommandsBesideRunningService(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	url, serve := startProcess(t, dir)

	code, out := vmsauth(t, "cam9-password\n", "user", "add", "--data", dir, "--login", "cam9", "--api", "client")
	if code != 0 || !strings.Contains(out, "Created user cam9") {
		t.Fatalf("user add beside the service: %d %s", code, out)
	}
	status, body := postJSON(t, http.DefaultClient, url+"/api/v1/token", `{"login":"cam9","password":"cam9-password"}`)
	if status != http.StatusOK {
		t.Fatalf("the new user cannot log in without a restart: %d %v", status, body)
	}
	if code, out := vmsauth(t, "", "user", "list", "--data", dir); code != 0 || !strings.Contains(out, "cam9") {
		t.Fatalf("user list: %d %s", code, out)
	}
	if code, out := vmsauth(t, "", "user", "show", "ghost", "--data", dir); code != 1 || !strings.Contains(out, `no user with login "ghost"`) {
		t.Fatalf("an error through the socket: %d %s", code, out)
	}
	if code, out := vmsauth(t, "", "audit", "--data", dir, "--login", "CAM9"); code != 0 || !strings.Contains(out, `"cam9"`) || !strings.Contains(out, "ok") {
		t.Fatalf("audit: %d %s", code, out)
	}

	backup := filepath.Join(t.TempDir(), "backup.db")
	if code, out := vmsauth(t, "", "backup", "--data", dir, backup); code != 0 || !strings.Contains(out, "checked") {
		t.Fatalf("backup beside the service: %d %s", code, out)
	}
	if err := checkDatabase(backup); err != nil {
		t.Fatalf("the backup is not a sound database: %v", err)
	}
	if code, out := vmsauth(t, "", "restore", "--data", dir, backup); code != 1 || !strings.Contains(out, "stop it first") {
		t.Fatalf("restore while running: %d %s", code, out)
	}

	// Changes after the backup are undone by restoring it.
	vmsauth(t, "", "user", "delete", "cam9", "--data", dir)
	serve.Process.Signal(syscall.SIGTERM)
	if err := serve.Wait(); err != nil {
		t.Fatalf("serve did not stop cleanly on SIGTERM: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, socketFile)); !os.IsNotExist(err) {
		t.Fatalf("control socket left behind: %v", err)
	}
	if code, out := vmsauth(t, "", "restore", "--data", dir, backup); code != 0 {
		t.Fatalf("restore: %d %s", code, out)
	}
	url, _ = startProcess(t, dir)
	if status, body := postJSON(t, http.DefaultClient, url+"/api/v1/token", `{"login":"cam9","password":"cam9-password"}`); status != http.StatusOK {
		t.Fatalf("login after restore: %d %v", status, body)
	}
}

func TestBackupAndRestoreStopped(t *testing.T) {
	dir := t.TempDir()
	getenv := envOf("VMSAUTH_DATA", dir, "VMSAUTH_BCRYPT_COST", "4")
	if code, out, errOut := cli(t, getenv, "pw-123456\n", "user", "add", "--login", "one"); code != 0 {
		t.Fatalf("%s%s", out, errOut)
	}
	backup := filepath.Join(t.TempDir(), "b.db")
	if code, out, errOut := cli(t, getenv, "", "backup", backup); code != 0 {
		t.Fatalf("backup: %s%s", out, errOut)
	}
	if code, _, _ := cli(t, getenv, "", "user", "delete", "one"); code != 0 {
		t.Fatal("delete")
	}
	if code, out, errOut := cli(t, getenv, "", "restore", backup); code != 0 || !strings.Contains(out, "before-restore") {
		t.Fatalf("restore: %d %s%s", code, out, errOut)
	}
	if code, out, _ := cli(t, getenv, "", "user", "show", "one"); code != 0 {
		t.Fatalf("user after restore: %s", out)
	}

	for _, tt := range []struct {
		name string
		data []byte
		want string
	}{
		{"Empty", nil, "empty"},
		{"Text", []byte("not a database at all, just some text that is long enough to look like a file\n"), "not"},
	} {
		t.Run("Refuses"+tt.name, func(t *testing.T) {
			bad := filepath.Join(t.TempDir(), "bad.db")
			os.WriteFile(bad, tt.data, 0o600)
			before, _ := os.ReadFile(filepath.Join(dir, databaseFile))
			code, out, errOut := cli(t, getenv, "", "restore", bad)
			if code != 1 || !strings.Contains(errOut, "refusing to restore") || !strings.Contains(errOut, tt.want) {
				t.Fatalf("restore of a bad file: %d %s%s", code, out, errOut)
			}
			if after, _ := os.ReadFile(filepath.Join(dir, databaseFile)); !bytes.Equal(before, after) {
				t.Fatal("a refused restore changed the database")
			}
		})
	}
}
