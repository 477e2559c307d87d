//go:build unix

package cli

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"vmsauth/auth"
	"vmsauth/store"
)

// TestControlSocketPrivateAtBind is finding 8 of issue 13: the control
// socket used to be bound with the process's umask and made 0600 only
// afterwards, leaving a window in which anyone could connect. Under the
// most permissive umask, the socket must be owner-only as it is bound.
func TestControlSocketPrivateAtBind(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), socketFile)
	ln, err := listenPrivate(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		t.Fatalf("socket bound with mode %o: others could connect before the chmod", perm)
	}
	// The process's umask is back as it was.
	if now := syscall.Umask(0); now != 0 {
		t.Fatalf("umask left at %o", now)
	}
}

// TestCommandWaitsForStartingService: a starting service locks the
// database, makes the first admin and only then opens its control socket. A
// command run in between (just after `vmsauth start`) used to fail at once
// with "its control socket does not answer: ... no such file or
// directory"; it must wait for the socket and run there.
func TestCommandWaitsForStartingService(t *testing.T) {
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, databaseFile), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	svc, err := auth.New(db, auth.Config{BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- Main(t.Context(), []string{"user", "add", "--login", "late", "--data", dir},
			Env{Getenv: func(string) string { return "" }, Stdin: strings.NewReader("Late-password-1\n"), Stdout: &out, Stderr: &errOut})
	}()
	// The command waits 1 s for the database lock (store.Options.Timeout)
	// and then dials the socket: it must find none, as in the service's
	// start. (Should the machine stall the command past this, the socket is
	// there when it dials and the test passes without trying the wait.)
	time.Sleep(1500 * time.Millisecond)
	ln, err := listenControl(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() {
		serveControl(ctx, ln, &local{db: db, svc: svc}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		close(served)
	}()
	t.Cleanup(func() { stop(); <-served })
	if code := <-done; code != 0 {
		t.Fatalf("user add while the service starts: exit %d: %s", code, errOut.String())
	}
	if _, err := svc.UserByLogin(t.Context(), "late"); err != nil {
		t.Fatalf("user add did not reach the service: %v", err)
	}
}
