package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"vmsauth/auth"
	"vmsauth/store"
)

// bbolt lets one process hold the database. While the service runs, the
// user, audit and backup commands reach it through a unix socket in the
// data directory instead, and the service runs the very same command code
// on its open database, so the result is the same either way.

// socketFile is the control socket inside the data directory.
const socketFile = "vmsauth.sock"

// local is an open database with the rules on it.
type local struct {
	db    *store.DB
	svc   *auth.Service
	audit *auth.Auditor // nil outside serve
}

type localKey struct{}

// exitCode carries a forwarded command's exit status back to run.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// withService runs fn on the database in dataDir: the one the running
// service holds when fn runs inside it, else a freshly opened one (read-only
// for a command that only reads: it never writes to the file), else, when
// the service holds the file, the whole command (args) goes over the
// control socket.
func withService(ctx context.Context, dataDir string, acfg auth.Config, readOnly bool, args []string, stdin io.Reader, stdout, stderr io.Writer, fn func(*local) error) error {
	if l, ok := ctx.Value(localKey{}).(*local); ok {
		return fn(l)
	}
	db, svc, err := openService(dataDir, acfg, store.Options{ReadOnly: readOnly})
	if errors.Is(err, store.ErrLocked) {
		return forward(ctx, dataDir, args, stdin, stdout, stderr, err)
	}
	if err != nil {
		return err
	}
	defer db.Close()
	return fn(&local{db: db, svc: svc})
}

// ctlRequest is a command sent over the socket.
type ctlRequest struct {
	Args  []string `json:"args"`
	Stdin string   `json:"stdin"`
}

// ctlResponse is what the command printed and how it ended.
type ctlResponse struct {
	Code   int    `json:"code"`
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
}

// socketClient talks HTTP to the service's control socket.
func socketClient(dataDir string) *http.Client {
	path := filepath.Join(dataDir, socketFile)
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
}

// ctlDo sends one request to the service's control socket. locked is the
// error that sent the command there, reported if the socket does not answer.
func ctlDo(ctx context.Context, dataDir, method, path string, body io.Reader, locked error) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://vmsauth"+path, body)
	if err != nil {
		return nil, err
	}
	res, err := socketClient(dataDir).Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w, and its control socket does not answer: %v", locked, err)
	}
	return res, nil
}

// forward sends a command to the running service. locked is the error
// that sent it there, reported if the socket does not answer.
func forward(ctx context.Context, dataDir string, args []string, stdin io.Reader, stdout, stderr io.Writer, locked error) error {
	input, err := pipedInput(stdin)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(ctlRequest{Args: args, Stdin: input})
	res, err := ctlDo(ctx, dataDir, http.MethodPost, "/run", bytes.NewReader(body), locked)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	var out ctlResponse
	if res.StatusCode != http.StatusOK || json.NewDecoder(res.Body).Decode(&out) != nil {
		return fmt.Errorf("the running service refused the command (HTTP %d)", res.StatusCode)
	}
	io.WriteString(stdout, out.Stdout)
	io.WriteString(stderr, out.Stderr)
	if out.Code != 0 {
		return exitCode(out.Code)
	}
	return nil
}

// pipedInput reads what was piped to the command (a password), but not
// from a terminal: there the service generates one, as a local run would.
func pipedInput(stdin io.Reader) (string, error) {
	if f, ok := stdin.(*os.File); ok {
		if st, err := f.Stat(); err != nil || st.Mode()&os.ModeCharDevice != 0 {
			return "", nil
		}
	}
	b, err := io.ReadAll(io.LimitReader(stdin, 4096))
	return string(b), err
}

// socketCommands are the only commands the socket runs.
var socketCommands = []string{"user", "audit"}

// ctlHandler serves the control socket for the running service l.
func ctlHandler(l *local, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /run", func(w http.ResponseWriter, r *http.Request) {
		var req ctlRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil ||
			len(req.Args) == 0 || !slices.Contains(socketCommands, req.Args[0]) {
			http.Error(w, "not a command the socket runs", http.StatusBadRequest)
			return
		}
		log.Info("command from the control socket", "command", strings.Join(req.Args[:min(2, len(req.Args))], " "))
		var out, errOut bytes.Buffer
		ctx := context.WithValue(r.Context(), localKey{}, l)
		noEnv := func(string) string { return "" }
		code := run(ctx, req.Args, noEnv, strings.NewReader(req.Stdin), &out, &errOut)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(ctlResponse{Code: code, Stdout: out.String(), Stderr: errOut.String()})
	})
	mux.HandleFunc("GET /backup", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		if _, err := l.db.Backup(w); err != nil {
			log.Error("backup over the control socket", "err", err)
		}
	})
	return mux
}

// listenControl opens the control socket, owner-only from the moment it
// exists (listenPrivate). A stale socket left by a crash is removed:
// holding the database lock proves no other serve is using it.
func listenControl(dataDir string) (net.Listener, error) {
	path := filepath.Join(dataDir, socketFile)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	ln, err := listenPrivate(path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// serveControl serves the socket until ctx ends.
func serveControl(ctx context.Context, ln net.Listener, l *local, log *slog.Logger) {
	srv := &http.Server{Handler: ctlHandler(l, log), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("control socket", "err", err)
	}
}
