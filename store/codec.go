package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"vmsauth/auth"
)

// Sessions are stored in binary, not JSON, and split in two records under
// their token hash: the state a token check needs (bucketSessionState) and
// the device description only session lists show (bucketSessionDevice).
// Every check reads a state record, so keeping it small keeps the pages a
// busy box maps into memory few, and decoding it takes a fraction of what
// JSON did. The public id is not stored: it is derived from the hash.

// stateFormat leads every state record, so the encoding can change later
// without a schema step.
const stateFormat = 1

// apiCodes are the stored forms of the APIs; 0 is never written.
var apiCodes = map[auth.API]byte{auth.APIClient: 1, auth.APIAdmin: 2, auth.APIIntegration: 3}

func apiOf(code byte) (auth.API, bool) {
	for a, c := range apiCodes {
		if c == code {
			return a, true
		}
	}
	return "", false
}

var errBadRecord = errors.New("malformed session record")

// encodeState is the state record of s: format, API, user id, the three
// times as Unix nanoseconds, IP and refresh family.
func encodeState(s *auth.Session) ([]byte, error) {
	code, ok := apiCodes[s.API]
	if !ok {
		return nil, errors.New("store: session of unknown API " + string(s.API))
	}
	b := make([]byte, 0, 2+binary.MaxVarintLen64+24+2+len(s.IP)+len(s.Family))
	b = append(b, stateFormat, code)
	b = binary.AppendUvarint(b, uint64(s.UserID))
	for _, t := range []time.Time{s.ExpiresAt, s.CreatedAt, s.LastSeen} {
		b = binary.BigEndian.AppendUint64(b, uint64(t.UnixNano()))
	}
	b = appendString(b, s.IP)
	return appendString(b, s.Family), nil
}

// stateHead reads the fields a sweep or count needs without building a
// session.
func stateHead(v []byte) (api auth.API, expires time.Time, err error) {
	if len(v) < 2 || v[0] != stateFormat {
		return "", time.Time{}, errBadRecord
	}
	api, ok := apiOf(v[1])
	_, n := binary.Uvarint(v[2:])
	if !ok || n <= 0 || len(v) < 2+n+8 {
		return "", time.Time{}, errBadRecord
	}
	return api, unixNano(v[2+n:]), nil
}

// decodeState fills s from its token hash and state record.
func decodeState(h auth.TokenHash, v []byte, s *auth.Session) error {
	return decodeStateAs(h, h.SessionID(), v, s)
}

// decodeStateAs is decodeState for a session whose public id is known.
func decodeStateAs(h auth.TokenHash, id string, v []byte, s *auth.Session) error {
	api, _, err := stateHead(v)
	if err != nil {
		return err
	}
	uid, n := binary.Uvarint(v[2:])
	r := v[2+n:]
	if len(r) < 24 {
		return errBadRecord
	}
	*s = auth.Session{
		ID: id, TokenHash: h, UserID: int64(uid), API: api,
		ExpiresAt: unixNano(r), CreatedAt: unixNano(r[8:]), LastSeen: unixNano(r[16:]),
	}
	r = r[24:]
	if s.IP, r, err = readString(r); err != nil {
		return err
	}
	if s.Family, r, err = readString(r); err != nil {
		return err
	}
	if len(r) != 0 {
		return errBadRecord
	}
	return nil
}

// encodeDevice is the device record of m: everything of it but the IP,
// which changes with activity and so lives in the state record.
func encodeDevice(m auth.ClientMeta) []byte {
	b := make([]byte, 0, 3+len(m.UserAgent)+len(m.Client)+len(m.Device))
	b = appendString(b, m.UserAgent)
	b = appendString(b, m.Client)
	return appendString(b, m.Device)
}

func decodeDevice(v []byte, m *auth.ClientMeta) (err error) {
	if m.UserAgent, v, err = readString(v); err != nil {
		return err
	}
	if m.Client, v, err = readString(v); err != nil {
		return err
	}
	if m.Device, v, err = readString(v); err != nil {
		return err
	}
	if len(v) != 0 {
		return errBadRecord
	}
	return nil
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func readString(b []byte) (string, []byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return "", nil, errBadRecord
	}
	return string(b[k : k+int(n)]), b[k+int(n):], nil
}

// unixNano reads a time written by encodeState. It is in UTC, like every
// time the store returns; web shows them in the box's zone.
func unixNano(b []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(b))).UTC()
}

// migrateSessionsToBinary rewrites schema 2's JSON sessions, kept by a
// random public id with a hash index, as schema 3's records. Each session
// gets the id its hash gives, so lists show new ids for the old sessions;
// their tokens keep working.
func migrateSessionsToBinary(tx *bolt.Tx) error {
	var old []*auth.Session
	if b := tx.Bucket([]byte("sessions")); b != nil {
		err := b.ForEach(func(k, v []byte) error {
			s := new(auth.Session)
			if err := json.Unmarshal(v, s); err != nil {
				return fmt.Errorf("session %s: %w", k, err)
			}
			s.ID = s.TokenHash.SessionID()
			old = append(old, s)
			return nil
		})
		if err != nil {
			return err
		}
	}
	for _, name := range []string{"sessions", "sessions_by_hash", "user_sessions"} {
		if err := tx.DeleteBucket([]byte(name)); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
			return err
		}
	}
	for _, name := range [][]byte{bucketSessionState, bucketSessionDevice, bucketSessionIDs, bucketUserSessions} {
		if _, err := tx.CreateBucket(name); err != nil {
			return err
		}
	}
	for _, s := range old {
		if err := putSession(tx, s); err != nil {
			return err
		}
	}
	return nil
}
