package cli

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"vmsauth/auth"
	"vmsauth/store"
)

// TestControlSocketAllowList checks that the socket runs the commands the
// table marks for it, on the service's open database, and no others.
func TestControlSocketAllowList(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), databaseFile), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	svc, err := auth.New(db, auth.Config{BcryptCost: 4})
	if err != nil {
		t.Fatal(err)
	}
	h := ctlHandler(&local{db: db, svc: svc}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	post := func(args ...string) (*httptest.ResponseRecorder, ctlResponse) {
		body, _ := json.Marshal(ctlRequest{Args: args, Stdin: "Socket-password-1\n"})
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/run", strings.NewReader(string(body))))
		var out ctlResponse
		json.Unmarshal(rec.Body.Bytes(), &out)
		return rec, out
	}
	t.Run("OK", func(t *testing.T) {
		// --data names a directory that does not exist: the command must
		// run on the open database, not open one of its own.
		if rec, out := post("user", "add", "--login", "sock", "--data", "/nonexistent"); rec.Code != http.StatusOK || out.Code != 0 {
			t.Fatalf("user add: HTTP %d, %+v", rec.Code, out)
		}
		if u, err := svc.UserByLogin(t.Context(), "sock"); err != nil || u.Login != "sock" {
			t.Fatalf("user add over the socket did not reach the open database: %v", err)
		}
		if rec, out := post("audit", "--data", "/nonexistent"); rec.Code != http.StatusOK || out.Code != 0 || !strings.HasPrefix(out.Stdout, "TIME") {
			t.Fatalf("audit: HTTP %d, %+v", rec.Code, out)
		}
	})
	t.Run("ErrNotSocketCommand", func(t *testing.T) {
		for _, args := range [][]string{
			nil, {"serve"}, {"backup", "/tmp/x.db"}, {"restore", "/tmp/x.db"}, {"install"},
			{"uninstall"}, {"stop"}, {"version"}, {"help"}, {"frobnicate"},
		} {
			if rec, _ := post(args...); rec.Code != http.StatusBadRequest {
				t.Errorf("%q: HTTP %d, want 400", args, rec.Code)
			}
		}
	})
}

// TestUsageListsEveryCommand checks the usage text, made from the table,
// names every command.
func TestUsageListsEveryCommand(t *testing.T) {
	u := usage()
	for _, c := range commands() {
		if c.names[0] == "help" {
			continue
		}
		if !strings.Contains(u, " "+c.names[0]) {
			t.Errorf("usage does not name %q:\n%s", c.names[0], u)
		}
	}
}
