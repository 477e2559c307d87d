package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"vmsauth/auth"
	"vmsauth/etcd"
)

// A site's records move in and out as an auth.Snapshot: Load fills an
// empty prefix with one (`vmsauth site init`: a box's file becomes the
// first of a site, or a backup goes back into one), and Snapshot reads one
// at a single revision (`vmsauth backup` on a site box).
//
// etcd refuses a Txn of more than 128 operations, so a box's users and
// sessions go in many Txns. So that a crash half-way never leaves a half
// site that boxes would serve, the first Txn claims the empty prefix with
// the key "init" (under the prefix), every chunk is guarded by it, and
// the last Txn writes the counters and deletes it. While it is there,
// serve refuses the prefix (CheckInit) and Snapshot refuses to read it;
// running site init again redoes it from the start.

// initKey, under the prefix, marks a site init under way or interrupted.
const initKey = "init"

// ErrInitUnfinished: the prefix holds a site init that has not finished.
var ErrInitUnfinished = errors.New("a vmsauth site init on this prefix has not finished")

// ErrSiteExists: Load was given a prefix that already holds keys.
var ErrSiteExists = errors.New("the prefix already holds a site")

// initRecord is the value of the init key: who started it, and when.
type initRecord struct {
	Source  string    `json:"source"`
	Started time.Time `json:"started"`
}

// CheckInit returns an error matching ErrInitUnfinished when a site init
// on the prefix has not finished (crashed, or is still running): a box
// must not serve it. etcd not answering is returned as it is (it matches
// auth.ErrUnavailable).
func (s *Store) CheckInit(ctx context.Context) error {
	kv, _, err := s.get(ctx, s.key(initKey), 0)
	if err != nil || kv == nil {
		return err
	}
	var r initRecord
	_ = json.Unmarshal(kv.Value, &r)
	return fmt.Errorf("%w (started %s from %s): run `vmsauth site init` again to finish it; until then no box serves the prefix %s",
		ErrInitUnfinished, r.Started.Local().Format(time.DateTime), r.Source, s.prefix)
}

// Prefix is the key prefix the store works under, with its trailing "/".
func (s *Store) Prefix() string { return s.prefix }

// LoadStats says what Load wrote.
type LoadStats struct {
	Users, Sessions, Refreshes, Audit int
	// Redone: an unfinished init was found and done again from the start.
	Redone bool
	// Revision is the site's revision once the init was complete.
	Revision int64
}

// loadChunkOps and loadChunkBytes bound one Txn of Load: under etcd's
// default --max-txn-ops of 128, and well under its 1.5 MiB request limit
// (a user with many camera groups is a few KB of JSON).
const (
	loadChunkOps   = 120
	loadChunkBytes = 512 << 10
)

// Load copies snap into the prefix, which must be empty or hold only an
// unfinished init (which is then redone from the start); source names
// where snap came from, for CheckInit's message. See the comment above
// for how a crash half-way is kept from being served.
func (s *Store) Load(ctx context.Context, snap *auth.Snapshot, source string) (LoadStats, error) {
	stats := LoadStats{Users: len(snap.Users), Sessions: len(snap.Sessions), Refreshes: len(snap.Refreshes), Audit: len(snap.Audit)}
	if err := checkSnapshot(snap); err != nil {
		return stats, err
	}
	var chunks [][]etcd.Op
	var cur []etcd.Op
	size := 0
	add := func(ops ...etcd.Op) {
		n := 0
		for _, op := range ops {
			n += len(op.Put.Key) + len(op.Put.Value)
		}
		if len(cur)+len(ops) > loadChunkOps || (len(cur) > 0 && size+n > loadChunkBytes) {
			chunks, cur, size = append(chunks, cur), nil, 0
		}
		cur, size = append(cur, ops...), size+n
	}
	for _, u := range snap.Users {
		v, err := json.Marshal(u)
		if err != nil {
			return stats, err
		}
		add(put(s.userKey(u.ID), v), put(s.loginKey(u.Login), []byte(strconv.FormatInt(u.ID, 10))))
	}
	for _, sess := range snap.Sessions {
		ops, err := s.putSession(sess)
		if err != nil {
			return stats, err
		}
		add(ops...)
	}
	for _, r := range snap.Refreshes {
		ops, err := s.putRefresh(r)
		if err != nil {
			return stats, err
		}
		add(ops...)
	}
	for _, a := range snap.Audit {
		v, err := json.Marshal(&a.Entry)
		if err != nil {
			return stats, err
		}
		add(put(s.auditKey(a.Seq), v))
	}
	if len(cur) > 0 {
		chunks = append(chunks, cur)
	}

	marker := s.key(initKey)
	rev, redone, err := s.claim(ctx, marker, source)
	if err != nil {
		return stats, err
	}
	stats.Redone = redone
	// Every chunk holds only while the marker is the one this run wrote
	// (a second init started meanwhile takes it over) and no box has
	// started serving the prefix (it would write the counters).
	guard := []etcd.Compare{
		etcd.CompareModRevision(marker, etcd.Equal, rev),
		etcd.CompareVersion(s.key("n/users"), etcd.Equal, 0),
		etcd.CompareVersion(s.key("n/audit"), etcd.Equal, 0),
	}
	for _, ops := range chunks {
		if _, err := s.loadTxn(ctx, etcd.TxnRequest{Compare: guard, Success: ops}, marker, rev); err != nil {
			return stats, err
		}
	}
	last := []etcd.Op{del(marker)}
	if snap.LastUserID > 0 {
		last = append(last, put(s.key("n/users"), []byte(strconv.FormatInt(snap.LastUserID, 10))))
	}
	if snap.LastAudit > 0 {
		last = append(last, put(s.key("n/audit"), []byte(strconv.FormatInt(snap.LastAudit, 10))))
	}
	resp, err := s.loadTxn(ctx, etcd.TxnRequest{Compare: guard, Success: last}, marker, rev)
	if err != nil {
		return stats, err
	}
	stats.Revision = resp.Header.Revision
	return stats, nil
}

// claim writes the init marker on an empty prefix, or over an unfinished
// init's (deleting everything else under the prefix), and returns the
// marker's revision.
func (s *Store) claim(ctx context.Context, marker []byte, source string) (int64, bool, error) {
	v, _ := json.Marshal(initRecord{Source: source, Started: time.Now().UTC()})
	empty := etcd.CompareVersion([]byte(s.prefix), etcd.Equal, 0).WithPrefix()
	resp, err := s.txn(ctx, etcd.TxnRequest{
		Compare: []etcd.Compare{empty},
		Success: []etcd.Op{put(marker, v)},
		Failure: []etcd.Op{{Range: &etcd.RangeRequest{Key: marker}}},
	})
	if err != nil {
		return 0, false, fmt.Errorf("site init: claiming the prefix %s: %w", s.prefix, err)
	}
	if resp.Succeeded {
		return resp.Header.Revision, false, nil
	}
	if len(resp.Responses) != 1 || resp.Responses[0].Range == nil {
		return 0, false, errors.New("etcdstore: malformed answer to a Txn")
	}
	if len(resp.Responses[0].Range.KVs) == 0 {
		p := []byte(s.prefix)
		n, err := s.rangeKV(ctx, etcd.RangeRequest{Key: p, RangeEnd: etcd.PrefixEnd(p), CountOnly: true})
		count := "some"
		if err == nil {
			count = strconv.FormatInt(n.Count, 10)
		}
		return 0, false, fmt.Errorf("%w: %s holds %s keys, and site init only fills an empty prefix, so that it never mixes two boxes' users; nothing was changed. Start this box with --etcd to join that site (its own file is left as it is), or give another --etcd-prefix, or clear the prefix first (etcdctl del --prefix %s) if it holds nothing you need",
			ErrSiteExists, s.prefix, count, s.prefix)
	}
	// An init that did not finish: redo it. The marker stays (a Txn may
	// not put a key in a range it deletes), rewritten.
	old := resp.Responses[0].Range.KVs[0]
	after := append(append([]byte(nil), marker...), 0)
	resp, err = s.txn(ctx, etcd.TxnRequest{
		Compare: []etcd.Compare{etcd.CompareModRevision(marker, etcd.Equal, old.ModRevision)},
		Success: []etcd.Op{
			{Delete: &etcd.DeleteRangeRequest{Key: []byte(s.prefix), RangeEnd: marker}},
			{Delete: &etcd.DeleteRangeRequest{Key: after, RangeEnd: etcd.PrefixEnd([]byte(s.prefix))}},
			put(marker, v),
		},
	})
	if err != nil {
		return 0, false, fmt.Errorf("site init: taking over the unfinished init: %w", err)
	}
	if !resp.Succeeded {
		return 0, false, errors.New("site init: another site init is running on this prefix; let it finish")
	}
	return resp.Header.Revision, true, nil
}

// loadTxn commits one Txn of Load, trying again while etcd does not
// answer: each is guarded by the marker, so it cannot apply twice to
// anyone's harm. The last Txn deletes the marker: one that was applied
// without an answer then fails its compare, and is found done.
func (s *Store) loadTxn(ctx context.Context, txn etcd.TxnRequest, marker []byte, rev int64) (*etcd.TxnResponse, error) {
	var err error
	for try := 0; try < 10; try++ {
		if try > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(500 * time.Millisecond):
			}
		}
		var resp *etcd.TxnResponse
		resp, err = s.txn(ctx, txn)
		if errors.Is(err, auth.ErrUnavailable) {
			continue
		}
		if err != nil {
			break
		}
		if resp.Succeeded {
			return resp, nil
		}
		kv, now, gerr := s.get(ctx, marker, 0)
		if gerr != nil {
			err = gerr
			break
		}
		if kv == nil && try > 0 && len(txn.Success) > 0 && txn.Success[0].Delete != nil {
			return &etcd.TxnResponse{Header: etcd.Header{Revision: now}, Succeeded: true}, nil
		}
		if kv == nil || kv.ModRevision != rev {
			return nil, errors.New("site init: another site init took over this prefix meanwhile; let it finish")
		}
		return nil, fmt.Errorf("site init: a box started serving the prefix %s during the init; stop it, then run site init again", s.prefix)
	}
	return nil, fmt.Errorf("site init stopped half-way (%w); run it again to finish it: until then no box serves the prefix %s", err, s.prefix)
}

// checkSnapshot refuses a snapshot that would make a broken site: a
// record of a user not in it, a login twice, an id above its counter.
func checkSnapshot(snap *auth.Snapshot) error {
	users := make(map[int64]bool, len(snap.Users))
	logins := make(map[string]bool, len(snap.Users))
	for _, u := range snap.Users {
		if u.ID <= 0 || u.ID > snap.LastUserID || users[u.ID] {
			return fmt.Errorf("site init: user id %d is invalid, given twice or above the counter %d", u.ID, snap.LastUserID)
		}
		if logins[loginKey(u.Login)] {
			return fmt.Errorf("site init: login %q is given twice", u.Login)
		}
		users[u.ID], logins[loginKey(u.Login)] = true, true
	}
	for _, sess := range snap.Sessions {
		if !users[sess.UserID] || sess.ID != sess.TokenHash.SessionID() {
			return fmt.Errorf("site init: session %s: no such user %d, or an id its token hash does not give", sess.ID, sess.UserID)
		}
	}
	for _, r := range snap.Refreshes {
		if !users[r.UserID] {
			return fmt.Errorf("site init: refresh token of no such user %d", r.UserID)
		}
	}
	for _, a := range snap.Audit {
		if a.Seq <= 0 || a.Seq > snap.LastAudit {
			return fmt.Errorf("site init: audit entry %d is invalid or above the counter %d", a.Seq, snap.LastAudit)
		}
	}
	return nil
}

// Snapshot reads the whole site at one revision: every range is read at
// the revision of the first read, so the snapshot is one consistent state
// of the site, as a bbolt read transaction is of a file. It refuses a
// prefix with an unfinished init. It returns the revision read.
func (s *Store) Snapshot(ctx context.Context) (*auth.Snapshot, int64, error) {
	kv, rev, err := s.get(ctx, s.key(initKey), 0)
	if err != nil {
		return nil, 0, err
	}
	if kv != nil {
		return nil, 0, s.CheckInit(ctx)
	}
	snap := new(auth.Snapshot)
	for key, dst := range map[string]*int64{"n/users": &snap.LastUserID, "n/audit": &snap.LastAudit} {
		kv, _, err := s.get(ctx, s.key(key), rev)
		if err != nil {
			return nil, 0, err
		}
		if kv != nil {
			if *dst, err = parseID(kv.Value); err != nil {
				return nil, 0, fmt.Errorf("etcdstore: %s: %w", key, err)
			}
		}
	}
	err = s.scanAt(ctx, s.key("u/"), rev, func(kv *etcd.KeyValue) error {
		u, err := decodeUser(kv)
		snap.Users = append(snap.Users, u)
		return err
	})
	if err == nil {
		err = s.scanAt(ctx, s.key("us/"), rev, func(kv *etcd.KeyValue) error {
			sess, err := decodeSession(kv)
			snap.Sessions = append(snap.Sessions, sess)
			return err
		})
	}
	if err == nil {
		err = s.scanAt(ctx, s.key("ur/"), rev, func(kv *etcd.KeyValue) error {
			r, err := decodeRefresh(kv)
			snap.Refreshes = append(snap.Refreshes, r)
			return err
		})
	}
	if err == nil {
		p := s.key("a/")
		err = s.scanAt(ctx, p, rev, func(kv *etcd.KeyValue) error {
			seq, err := parseID(kv.Key[len(p):])
			if err != nil {
				return fmt.Errorf("etcdstore: audit key %s: %w", kv.Key, err)
			}
			rec := auth.AuditRecord{Seq: seq}
			if err := json.Unmarshal(kv.Value, &rec.Entry); err != nil {
				return fmt.Errorf("etcdstore: decode audit entry %s: %w", kv.Key, err)
			}
			snap.Audit = append(snap.Audit, rec)
			return nil
		})
	}
	if errors.Is(err, etcd.ErrCompacted) {
		return nil, 0, fmt.Errorf("the site was compacted past revision %d while it was read; try again: %w", rev, err)
	}
	if err != nil {
		return nil, 0, err
	}
	return snap, rev, nil
}
