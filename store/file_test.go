package store_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"vmsauth/auth"
	"vmsauth/store"
	"vmsauth/store/storetest"
)

// realDB writes a vmsauth database with enough users to span many pages and
// returns its bytes.
func realDB(t *testing.T) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "real.db")
	db, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		u := &auth.User{Login: fmt.Sprintf("user%03d", i), Name: strings.Repeat("x", 200)}
		if err := db.CreateUser(t.Context(), u); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestOpenRefuses(t *testing.T) {
	real := realDB(t)
	garbage := make([]byte, 64<<10)
	_, _ = rand.Read(garbage)
	foreign := func(t *testing.T, path string) {
		b, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Update(func(tx *bolt.Tx) error {
			_, err := tx.CreateBucket([]byte("other"))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
	write := func(data []byte) func(*testing.T, string) {
		return func(t *testing.T, path string) {
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name   string
		create func(*testing.T, string)
		want   error
		says   string
	}{
		{"Empty", write(nil), store.ErrInvalid, "empty"},
		{"Garbage", write(garbage), store.ErrInvalid, "not a bbolt file"},
		{"Truncated100", write(real[:100]), store.ErrInvalid, "truncated"},
		{"Truncated4096", write(real[:4096]), store.ErrInvalid, "truncated"},
		{"TruncatedInData", write(real[:6*4096]), store.ErrInvalid, "truncated"},
		{"Foreign", foreign, store.ErrForeign, "not a vmsauth database"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "auth.db")
			tc.create(t, path)
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			db, err := store.Open(path, store.Options{})
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded")
			}
			storetest.WantErr(t, err, tc.want)
			if !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q should name the file and say %q", err, tc.says)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
				t.Error("Open changed the refused file")
			}
		})
	}
}

func TestOpenRecoversTornMeta(t *testing.T) {
	// A crash while bbolt writes meta page 0 leaves page 1 to fall back on;
	// such a file must still open.
	data := realDB(t)
	data[20] ^= 0xff // meta 0's version
	path := filepath.Join(t.TempDir(), "auth.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	db := openDB(t, path)
	if n, err := db.CountUsers(t.Context()); err != nil || n < 199 {
		t.Fatalf("CountUsers = %d, %v, want the 200 users or all but the last", n, err)
	}
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
}
