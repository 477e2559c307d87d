package etcdstore

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"time"

	"vmsauth/etcd"
)

// captchaTimeout bounds one captcha call to etcd: captcha.Used and
// captcha.Graces take no context (their callers' requests are bounded by
// the etcd client's per-request timeouts as well).
const captchaTimeout = 5 * time.Second

// Use is captcha.Used on etcd: the key c/<hex id> is created if absent,
// with a shared lease lasting at least until expires, so a captcha is
// answered once on the whole site and its key is gone soon after the
// captcha expired. Only login requests that carry a key sealed with the
// site's secret add keys, and the login throttle bounds those.
func (sh *Shared) Use(id string, expires time.Time) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), captchaTimeout)
	defer cancel()
	k := sh.s.key("c/", hex.EncodeToString([]byte(id)))
	// A lost answer is an error, not a retry: the captcha may be used
	// already, and the client draws another.
	resp, err := sh.putLeased(ctx, []etcd.Compare{etcd.CompareVersion(k, etcd.Equal, 0)}, nil, k, []byte{1}, expires)
	if err != nil {
		return false, err
	}
	return resp.Succeeded, nil
}

// Graces is captcha.Graces on etcd: g/<sha-256 of the captcha key> holds
// the grace's end and the login, with a shared lease lasting at least
// until that end, so a retry after a 419 may reach any box of the site and
// spends the grace once. The end is in the value because a shared lease
// may outlive it by minutes.
func (sh *Shared) Graces() Graces { return Graces{sh} }

// Graces: see Shared.Graces.
type Graces struct{ sh *Shared }

func (g Graces) key(captchaKey string) []byte {
	h := sha256.Sum256([]byte(captchaKey))
	return g.sh.s.key("g/", hex.EncodeToString(h[:]))
}

// Grant gives key's grace to login until expires.
func (g Graces) Grant(key, login string, expires time.Time) error {
	ctx, cancel := context.WithTimeout(context.Background(), captchaTimeout)
	defer cancel()
	v := binary.BigEndian.AppendUint64(nil, uint64(expires.UnixMilli()))
	_, err := g.sh.putLeased(ctx, nil, nil, g.key(key), append(v, login...), expires)
	return err
}

// get reads key's grace if it is login's and has not ended.
func (g Graces) get(ctx context.Context, key, login string) (*etcd.KeyValue, error) {
	kv, _, err := g.sh.s.get(ctx, g.key(key), 0)
	if err != nil || kv == nil || len(kv.Value) < 8 {
		return nil, err
	}
	end := time.UnixMilli(int64(binary.BigEndian.Uint64(kv.Value)))
	if string(kv.Value[8:]) != login || !time.Now().Before(end) {
		return nil, nil
	}
	return kv, nil
}

// Has says whether key's grace is login's.
func (g Graces) Has(key, login string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), captchaTimeout)
	defer cancel()
	kv, err := g.get(ctx, key, login)
	return kv != nil, err
}

// Take spends key's grace if it is login's: the delete is guarded by the
// revision read, so two boxes cannot both spend it.
func (g Graces) Take(key, login string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), captchaTimeout)
	defer cancel()
	kv, err := g.get(ctx, key, login)
	if err != nil || kv == nil {
		return false, err
	}
	resp, err := g.sh.s.txn(ctx, etcd.TxnRequest{
		Compare: []etcd.Compare{unchanged(kv.Key, kv)},
		Success: []etcd.Op{del(kv.Key)},
	})
	if err != nil {
		return false, err
	}
	return resp.Succeeded, nil
}
