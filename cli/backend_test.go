package cli

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"vmsauth/auth"
	"vmsauth/store"
)

// onlyBackend hides the file methods of the Backend it wraps, as a backend
// without a local file (etcd) would have none.
type onlyBackend struct{ Backend }

func TestControlSocketBackup(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), databaseFile), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	get := func(b Backend) *httptest.ResponseRecorder {
		svc, err := auth.New(b, auth.Config{})
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		ctlHandler(&local{db: b, svc: svc}, log).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/backup", nil))
		return rec
	}
	t.Run("OK", func(t *testing.T) {
		rec := get(db)
		if rec.Code != http.StatusOK || rec.Body.Len() == 0 {
			t.Fatalf("GET /backup on bbolt: %d, %d bytes", rec.Code, rec.Body.Len())
		}
		path := filepath.Join(t.TempDir(), "copy.db")
		if _, err := writeChecked(path, func(w io.Writer) error { _, err := w.Write(rec.Body.Bytes()); return err }); err != nil {
			t.Fatalf("the copy is not a sound database: %v", err)
		}
	})
	t.Run("ErrNoFile", func(t *testing.T) {
		if rec := get(onlyBackend{db}); rec.Code != http.StatusNotImplemented {
			t.Fatalf("GET /backup without a file backend: %d, want 501", rec.Code)
		}
	})
}
