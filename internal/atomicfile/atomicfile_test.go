package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// entries lists dir, so a test can see that no temp file was left.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestWrite(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "secret")
		if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := Write(path, []byte("new"), 0o600); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil || string(b) != "new" {
			t.Fatalf("read %q, %v; want new", b, err)
		}
		if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
			t.Errorf("mode %v, want 0600", st.Mode().Perm())
		}
		if got := entries(t, dir); len(got) != 1 {
			t.Errorf("directory holds %q, want the file alone", got)
		}
	})
	t.Run("ErrFill", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "backup")
		if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
			t.Fatal(err)
		}
		boom := errors.New("copy failed")
		err := WriteFrom(path, 0o600, func(w io.Writer) error { w.Write([]byte("half")); return boom }, nil)
		if !errors.Is(err, boom) {
			t.Fatalf("err %v, want %v", err, boom)
		}
		if b, _ := os.ReadFile(path); string(b) != "old" {
			t.Errorf("file holds %q after a failed write, want old", b)
		}
		if got := entries(t, dir); len(got) != 1 {
			t.Errorf("directory holds %q, want the file alone", got)
		}
	})
	t.Run("ErrCheck", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "backup")
		var seen string
		err := WriteFrom(path, 0o600, func(w io.Writer) error { _, err := w.Write([]byte("whole")); return err },
			func(tmp string) error {
				b, _ := os.ReadFile(tmp)
				seen = string(b)
				return errors.New("damaged")
			})
		if err == nil || seen != "whole" {
			t.Fatalf("err %v, check saw %q; want an error after seeing the whole file", err, seen)
		}
		if got := entries(t, dir); len(got) != 0 {
			t.Errorf("directory holds %q, want nothing", got)
		}
	})
}
