package auth

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
)

// tokenBytes is the entropy of every bearer and refresh token: 256 bits.
const tokenBytes = 32

// sessionIDBytes makes the public session id 80 hex characters, the length
// of the seed product's access_token_id, so clients that size fields for it
// keep working.
const sessionIDBytes = 40

// sessionIDTag keeps session ids apart from any other use of SHA-512 over a
// token hash.
const sessionIDTag = "vmsauth session id\x00"

// newToken returns a fresh opaque token and the hash under which it is kept.
func newToken(rand io.Reader) (string, TokenHash, error) {
	b := make([]byte, tokenBytes)
	if _, err := io.ReadFull(rand, b); err != nil {
		return "", TokenHash{}, err
	}
	tok := base64.RawURLEncoding.EncodeToString(b)
	return tok, HashToken(tok), nil
}

// newID returns a random hex identifier of n bytes.
func newID(rand io.Reader, n int) (string, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(rand, b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// HashToken is the verifier stored for a token. A plain SHA-256 is enough:
// tokens carry 256 random bits, so there is nothing to brute-force, and
// lookups by hash give an attacker no timing signal about a stored token.
func HashToken(token string) TokenHash {
	// A token of the usual length is copied to the stack: []byte(token)
	// would allocate on every check.
	var buf [64]byte
	if len(token) <= len(buf) {
		return sha256.Sum256(append(buf[:0], token...))
	}
	return sha256.Sum256([]byte(token))
}

// SessionID is the public id of the session whose token hashes to h. It is
// derived rather than stored so that the record a token check reads stays
// small; being one-way, it tells nothing about the hash or the token.
func (h TokenHash) SessionID() string {
	sum := sha512.Sum512(append([]byte(sessionIDTag), h[:]...))
	return hex.EncodeToString(sum[:sessionIDBytes])
}

// MarshalText keeps a hash compact and readable in stored records.
func (h TokenHash) MarshalText() ([]byte, error) {
	return []byte(hex.EncodeToString(h[:])), nil
}

// UnmarshalText reads a hash written by MarshalText.
func (h *TokenHash) UnmarshalText(b []byte) error {
	if hex.DecodedLen(len(b)) != len(h) {
		return errors.New("auth: token hash has the wrong length")
	}
	_, err := hex.Decode(h[:], b)
	return err
}
