package cli

import (
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// Issue 12: imported hashes must have a cost from 8 to 14. A cost-31 hash
// was accepted, and two logins against it held every hash worker for days.
func TestUserAddImportedHashCost(t *testing.T) {
	getenv := envOf("VMSAUTH_DATA", t.TempDir(), "VMSAUTH_BCRYPT_COST", "4")
	low, err := bcrypt.GenerateFromPassword([]byte("imported-pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	withCost := func(cost string) string { return strings.Replace(string(low), "$04$", "$"+cost+"$", 1) }
	tests := []struct {
		name, hash, stderr string
	}{
		{"ErrCost31", withCost("31"), "vmsauth: The password hash must have a bcrypt cost from 8 to 14; this one has 31.\n"},
		{"ErrCost15", withCost("15"), "vmsauth: The password hash must have a bcrypt cost from 8 to 14; this one has 15.\n"},
		{"ErrCost4", string(low), "vmsauth: The password hash must have a bcrypt cost from 8 to 14; this one has 4.\n"},
		{"ErrNotBcrypt", "5f4dcc3b5aa765d61d8327deb882cf99", "vmsauth: The password hash must be a bcrypt hash.\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := cli(t, getenv, "", "user", "add", "--login", "imported", "--password-hash", tc.hash)
			if code != 1 || errOut != tc.stderr {
				t.Fatalf("exit %d, stderr %q, stdout %q; want 1 and %q", code, errOut, out, tc.stderr)
			}
		})
	}
	if _, out, _ := cli(t, getenv, "", "user", "list"); strings.Contains(out, "imported") {
		t.Fatalf("a refused import was stored:\n%s", out)
	}
	ok, err := bcrypt.GenerateFromPassword([]byte("imported-pw"), 8)
	if err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := cli(t, getenv, "", "user", "add", "--login", "imported", "--password-hash", string(ok)); code != 0 {
		t.Fatalf("a cost-8 import: exit %d: %s%s", code, out, errOut)
	}
}

// The CLI applies the login rules too, and says why it refuses a login.
func TestUserAddLoginRules(t *testing.T) {
	getenv := envOf("VMSAUTH_DATA", t.TempDir(), "VMSAUTH_BCRYPT_COST", "4")
	if code, out, errOut := cli(t, getenv, "", "user", "add", "--login", "admin"); code != 0 {
		t.Fatalf("user add admin: exit %d: %s%s", code, out, errOut)
	}
	tests := []struct{ name, login, stderr string }{
		{"ErrZeroWidthSpace", "ad\u200bmin", "vmsauth: The login may contain only letters, digits and @ . _ - + (no spaces, invisible or control characters, no accents on their own).\n"},
		{"ErrCyrillicA", "\u0430dmin", "vmsauth: The login must use letters of one script only (all Latin, or all Cyrillic...).\n"},
		{"ErrFullWidth", "ａｄｍｉｎ", "vmsauth: The login has already been taken.\n"},
		{"ErrDotlessI", "adm\u0131n", "vmsauth: The login looks like an existing login.\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := cli(t, getenv, "", "user", "add", "--login", tc.login)
			if code != 1 || errOut != tc.stderr {
				t.Fatalf("exit %d, stderr %q, stdout %q; want 1 and %q", code, errOut, out, tc.stderr)
			}
		})
	}
	// Lookup prepares the login too.
	if code, out, errOut := cli(t, getenv, "", "user", "show", "ＡＤＭＩＮ"); code != 0 || !regexp.MustCompile(`(?m)^login +admin$`).MatchString(out) {
		t.Fatalf("user show ＡＤＭＩＮ: exit %d: %s%s", code, out, errOut)
	}
}
