package cli

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vmsauth/captcha"
)

func TestCaptchaSecret(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := t.TempDir()
	path := filepath.Join(dir, captchaSecretFile)
	first, err := captchaSecret(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 || st.Size() != captcha.SecretSize {
		t.Fatalf("%s: %v %v; want %d bytes, mode 0600", path, st, err, captcha.SecretSize)
	}
	t.Run("KeptAcrossStarts", func(t *testing.T) {
		again, err := captchaSecret(dir, log)
		if err != nil || !bytes.Equal(again, first) {
			t.Fatalf("second start: %v, same secret %v", err, bytes.Equal(again, first))
		}
	})
	t.Run("DamagedRefused", func(t *testing.T) {
		if err := os.WriteFile(path, []byte("short"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := captchaSecret(dir, log)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "damaged") {
			t.Fatalf("damaged secret: %v", err)
		}
		if b, _ := os.ReadFile(path); string(b) != "short" {
			t.Fatal("the damaged file was replaced")
		}
	})
	t.Run("MissingMadeAgain", func(t *testing.T) {
		os.Remove(path)
		again, err := captchaSecret(dir, log)
		if err != nil || len(again) != captcha.SecretSize || bytes.Equal(again, first) {
			t.Fatalf("remade secret: %v", err)
		}
	})
}
