package cli

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
	"strings"
	"syscall"
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
	db    Backend
	svc   *auth.Service
	audit *auth.Auditor // nil outside serve
	// dir is the service's data directory ("" outside serve), where a
	// site backup is written before it is sent.
	dir string
}

// exitCode carries a forwarded command's exit status back to Main.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// withService runs fn on the database in dataDir: the one the running
// service holds when fn runs inside it, else a freshly opened one (read-only
// for a command that only reads: it never writes to the file), else, when
// the service holds the file, the whole command (args) goes over the
// control socket.
func withService(ctx context.Context, env Env, dataDir string, acfg auth.Config, readOnly bool, args []string, fn func(*local) error) error {
	if env.local != nil {
		return fn(env.local)
	}
	if isSiteBox(dataDir) {
		// The local file is not the site's: only the running service
		// reaches etcd.
		return forward(ctx, env, dataDir, args, errSiteBox)
	}
	db, svc, err := openService(dataDir, acfg, store.Options{ReadOnly: readOnly})
	if errors.Is(err, store.ErrLocked) {
		return forward(ctx, env, dataDir, args, err)
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

// socketWait bounds how long a command waits for the control socket of a
// service that holds the database but has no socket yet. A starting
// service locks the database, makes the first admin (a bcrypt hash: seconds
// on a slow box) and only then opens its socket, so a command run just
// after `vmsauth start` would otherwise fail with a missing socket.
var socketWait = 10 * time.Second

// socketClient talks HTTP to the service's control socket. A socket that
// is missing or refuses is dialled again until socketWait has passed:
// nothing was sent yet, so a retry cannot run a command twice.
func socketClient(dataDir string) *http.Client {
	path := filepath.Join(dataDir, socketFile)
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			deadline := time.Now().Add(socketWait)
			for {
				c, err := d.DialContext(ctx, "unix", path)
				if err == nil || !(errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)) || time.Now().After(deadline) {
					return c, err
				}
				select {
				case <-ctx.Done():
					return nil, err
				case <-time.After(100 * time.Millisecond):
				}
			}
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
		return nil, fmt.Errorf("%w, and its control socket does not answer after %v (is the service still starting, or stopping? see systemctl status vmsauth): %v", locked, socketWait, err)
	}
	return res, nil
}

// forward sends a command to the running service. locked is the error
// that sent it there, reported if the socket does not answer.
func forward(ctx context.Context, env Env, dataDir string, args []string, locked error) error {
	input, err := pipedInput(env.Stdin)
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
	io.WriteString(env.Stdout, out.Stdout)
	io.WriteString(env.Stderr, out.Stderr)
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

// ctlHandler serves the control socket for the running service l.
func ctlHandler(l *local, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /run", func(w http.ResponseWriter, r *http.Request) {
		var req ctlRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil ||
			len(req.Args) == 0 || !socketCommand(req.Args[0]) {
			http.Error(w, "not a command the socket runs", http.StatusBadRequest)
			return
		}
		log.Info("command from the control socket", "command", strings.Join(req.Args[:min(2, len(req.Args))], " "))
		var out, errOut bytes.Buffer
		// The caller's environment stays with the caller: flags alone
		// say what the command does here.
		noEnv := func(string) string { return "" }
		code := Main(r.Context(), req.Args, Env{Getenv: noEnv, Stdin: strings.NewReader(req.Stdin), Stdout: &out, Stderr: &errOut, local: l})
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(ctlResponse{Code: code, Stdout: out.String(), Stderr: errOut.String()})
	})
	mux.HandleFunc("GET /backup", func(w http.ResponseWriter, r *http.Request) {
		f, ok := l.db.(fileBackend)
		if s, site := l.db.(siteStore); !ok && site {
			serveSiteBackup(w, r, s, l.dir, log)
			return
		}
		if !ok {
			http.Error(w, "this backend has no backup", http.StatusNotImplemented)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		if _, err := f.Backup(w); err != nil {
			log.Error("backup over the control socket", "err", err)
		}
	})
	return mux
}

// socketCommand says whether the table lets the socket run the command.
func socketCommand(name string) bool {
	c, ok := lookup(name)
	return ok && c.socket
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
