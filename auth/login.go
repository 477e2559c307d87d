package auth

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/secure/precis"
	"golang.org/x/text/unicode/norm"
)

// Logins are what they look like. A login shows in the admin page, the
// CLI, the logs and the audit trail, where a technician must be able to
// tell one account from another by eye; so a new login is prepared and
// checked before it is stored:
//
//  1. PRECIS UsernameCaseMapped (RFC 8265): full-width forms become the
//     usual ones, letters become lower case, the string is normalised
//     (NFC), and invisible, control and other disallowed code points
//     (zero-width space, soft hyphen, spaces...) are refused;
//  2. what remains may hold only letters, the marks that belong to their
//     script, ASCII digits and @ . _ - +;
//  3. its letters come from one script: all Latin, all Cyrillic...
//     ("аdmin" with a Cyrillic а is refused);
//  4. it may not look like an existing login: equal once accents are
//     dropped and the letters that pass for Latin ones in other scripts
//     (and ı, ł, ø...) are read as those ("admın", "admín" and an
//     all-Cyrillic "аdмin" look like "admin").
//
// Logins stored before these rules keep working: lookup tries the login as
// typed (case-insensitively, as always) first, and its prepared form
// second, so "ＡＤＭＩＮ" finds "admin".

// loginSymbols are the characters besides letters and digits a login may
// hold: enough for e-mail addresses and the usual separators.
const loginSymbols = "@._-+"

// prepareLogin returns the stored form of a typed login (step 1 above),
// or an error if PRECIS refuses it.
func prepareLogin(login string) (string, error) {
	return precis.UsernameCaseMapped.String(login)
}

// findLogin finds the user a typed login names: as typed first, so that
// logins from before the rules keep finding their user even where their
// prepared form is another's, then in its prepared form.
func (s *Service) findLogin(ctx context.Context, login string) (*User, error) {
	u, err := s.store.UserByLogin(ctx, login)
	if !errors.Is(err, ErrUserNotFound) {
		return u, err
	}
	p, perr := prepareLogin(login)
	if perr != nil || p == strings.ToLower(login) {
		return nil, err
	}
	return s.store.UserByLogin(ctx, p)
}

// checkNewLogin validates a login for a new user into v and returns its
// stored form. The look-alike check (step 4) needs the other users and is
// lookalike's.
func checkNewLogin(v *ValidationError, login string) string {
	switch {
	case login == "":
		v.Add("login", "required", "")
		return login
	case !utf8.ValidString(login):
		v.Add("login", "string", "")
		return login
	}
	p, err := prepareLogin(login)
	switch {
	case err != nil:
		v.Add("login", "login_chars", "")
	case p == "":
		v.Add("login", "required", "")
	case utf8.RuneCountInString(p) > maxLoginLen:
		v.Add("login", "max", strconv.Itoa(maxLoginLen))
	case strings.IndexFunc(p, func(r rune) bool { return !loginRune(r) }) >= 0:
		v.Add("login", "login_chars", "")
	case !oneScript(p):
		v.Add("login", "login_script", "")
	}
	return p
}

// loginRune reports whether r may appear in a prepared login. Marks of the
// Inherited script (generic combining accents) are left out: NFC has
// already joined those that make a letter of their own, so what is left
// stacks accents or puts them where no letter has one. Marks of a script
// (a Devanagari vowel sign) count as that script's.
func loginRune(r rune) bool {
	switch {
	case r < utf8.RuneSelf:
		return 'a' <= r && r <= 'z' || '0' <= r && r <= '9' || strings.ContainsRune(loginSymbols, r)
	case unicode.IsLetter(r):
		return true
	case unicode.IsMark(r):
		return !unicode.Is(unicode.Inherited, r)
	}
	return false
}

// oneScript reports whether the letters and marks of s all belong to one
// script.
func oneScript(s string) bool {
	var script *unicode.RangeTable
	for _, r := range s {
		if !unicode.IsLetter(r) && !unicode.IsMark(r) {
			continue
		}
		if script != nil && unicode.Is(script, r) {
			continue
		}
		if script != nil {
			return false
		}
		if script = scriptOf(r); script == nil {
			return false
		}
	}
	return true
}

// scriptOf is the script r belongs to, or nil for Common and Inherited
// (which no letter of a login may need).
func scriptOf(r rune) *unicode.RangeTable {
	for name, t := range unicode.Scripts {
		if name != "Common" && name != "Inherited" && unicode.Is(t, r) {
			return t
		}
	}
	return nil
}

// skeleton is what a prepared login looks like, for comparing logins by
// eye: accents dropped, and letters that pass for others read as those.
func skeleton(login string) string {
	var b strings.Builder
	for _, r := range norm.NFD.String(strings.ToLower(login)) {
		if unicode.IsMark(r) {
			continue
		}
		if l, ok := confusables[r]; ok {
			r = l
		}
		b.WriteRune(r)
	}
	return b.String()
}

// confusables maps letters to the Latin letters they pass for in common
// fonts: Cyrillic and Greek look-alikes, and Latin letters whose
// difference is a missing dot or a stroke.
var confusables = map[rune]rune{
	// Cyrillic
	'а': 'a', 'е': 'e', 'і': 'i', 'ј': 'j', 'к': 'k', 'о': 'o', 'р': 'p', 'с': 'c',
	'у': 'y', 'х': 'x', 'ѕ': 's', 'һ': 'h', 'ԁ': 'd', 'ԛ': 'q', 'ԝ': 'w', 'ӏ': 'l',
	// Greek
	'α': 'a', 'β': 'b', 'ε': 'e', 'ι': 'i', 'κ': 'k', 'ν': 'v', 'ο': 'o', 'ρ': 'p', 'τ': 't',
	'υ': 'u', 'χ': 'x',
	// Latin
	'ı': 'i', 'ȷ': 'j', 'ł': 'l', 'ø': 'o', 'đ': 'd', 'ħ': 'h', 'ŧ': 't', 'ƅ': 'b',
}

// loginTaken names the rule a new prepared login breaks against the
// users there are: "unique" if one has it (in any case), "login_lookalike"
// if one has a login that looks the same (see skeleton), else "".
func loginTaken(login string, users []*User) string {
	for _, u := range users {
		if strings.ToLower(u.Login) == login {
			return "unique"
		}
	}
	sk := skeleton(login)
	for _, u := range users {
		if skeleton(u.Login) == sk {
			return "login_lookalike"
		}
	}
	return ""
}

// bidiControl reports whether r is one of the characters that reorder the text around them: in
// a name they can make the admin page or the audit show another name than
// the one stored (U+202A–U+202E embeddings and overrides, U+2066–U+2069
// isolates).
func bidiControl(r rune) bool {
	return 0x202A <= r && r <= 0x202E || 0x2066 <= r && r <= 0x2069
}
