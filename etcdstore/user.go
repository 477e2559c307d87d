package etcdstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"vmsauth/auth"
	"vmsauth/etcd"
)

// CreateUser assigns u.ID from the counter and stores u with its login,
// in one Txn guarded by the counter and the login's absence; see
// auth.Store.
func (s *Store) CreateUser(ctx context.Context, u *auth.User) error {
	counter, login := s.key("n/users"), s.loginKey(u.Login)
	var (
		id      int64
		written []byte // what the last try wrote under id
	)
	_, err := s.write(ctx, func(maybe bool) (*etcd.TxnRequest, error) {
		if maybe {
			kv, _, err := s.get(ctx, s.userKey(id), 0)
			if err != nil {
				return nil, err
			}
			if kv != nil && bytes.Equal(kv.Value, written) {
				return nil, nil // the last try was applied
			}
		}
		n, rev, err := s.get(ctx, counter, 0)
		if err != nil {
			return nil, err
		}
		owner, _, err := s.get(ctx, login, rev)
		if err != nil {
			return nil, err
		}
		if owner != nil {
			return nil, auth.ErrLoginTaken
		}
		id = 1
		if n != nil {
			last, err := parseID(n.Value)
			if err != nil {
				return nil, fmt.Errorf("etcdstore: user counter: %w", err)
			}
			id = last + 1
		}
		c := *u
		c.ID = id
		v, err := json.Marshal(&c)
		if err != nil {
			return nil, err
		}
		written = v
		return &etcd.TxnRequest{
			Compare: []etcd.Compare{unchanged(counter, n), etcd.CompareVersion(login, etcd.Equal, 0)},
			Success: []etcd.Op{
				put(counter, []byte(strconv.FormatInt(id, 10))),
				put(s.userKey(id), v),
				put(login, []byte(strconv.FormatInt(id, 10))),
			},
		}, nil
	})
	if err == nil {
		u.ID = id
	}
	return err
}

// user reads and decodes the user with the id at rev (0: now).
func (s *Store) user(ctx context.Context, id int64, rev int64) (*auth.User, *etcd.KeyValue, int64, error) {
	kv, rev, err := s.get(ctx, s.userKey(id), rev)
	if err != nil {
		return nil, nil, 0, err
	}
	if kv == nil {
		return nil, nil, rev, auth.ErrUserNotFound
	}
	u, err := decodeUser(kv)
	return u, kv, rev, err
}

func decodeUser(kv *etcd.KeyValue) (*auth.User, error) {
	u := new(auth.User)
	if err := json.Unmarshal(kv.Value, u); err != nil {
		return nil, fmt.Errorf("etcdstore: decode user %s: %w", kv.Key, err)
	}
	return u, nil
}

// User returns the user with the id; see auth.Store.
func (s *Store) User(ctx context.Context, id int64) (*auth.User, error) {
	u, _, _, err := s.user(ctx, id, 0)
	return u, err
}

// UserByLogin finds a user by login, case-insensitively; see auth.Store.
func (s *Store) UserByLogin(ctx context.Context, login string) (*auth.User, error) {
	kv, rev, err := s.get(ctx, s.loginKey(login), 0)
	if err != nil {
		return nil, err
	}
	if kv == nil {
		return nil, auth.ErrUserNotFound
	}
	id, err := parseID(kv.Value)
	if err != nil {
		return nil, fmt.Errorf("etcdstore: login index %s: %w", kv.Key, err)
	}
	u, _, _, err := s.user(ctx, id, rev)
	return u, err
}

// Users returns every user ordered by id, from one range.
func (s *Store) Users(ctx context.Context) ([]*auth.User, error) {
	kvs, _, err := s.list(ctx, s.key("u/"), 0)
	if err != nil {
		return nil, err
	}
	var users []*auth.User
	for i := range kvs {
		u, err := decodeUser(&kvs[i])
		if err != nil {
			return nil, err
		}
		users = append(users, u)
	}
	return users, nil
}

// CountUsers returns how many users exist.
func (s *Store) CountUsers(ctx context.Context) (int, error) {
	p := s.key("u/")
	r, err := s.rangeKV(ctx, etcd.RangeRequest{Key: p, RangeEnd: etcd.PrefixEnd(p), CountOnly: true})
	if err != nil {
		return 0, err
	}
	return int(r.Count), nil
}

// UpdateUser lets fn change the user and stores the result with the end
// of what auth.UserEnding names, in one Txn guarded by the user's revision
// (and the new login's absence, and the ended ranges); see auth.Store. fn
// runs once per try.
func (s *Store) UpdateUser(ctx context.Context, id int64, fn func(u *auth.User) (end []auth.API, err error)) (*auth.User, error) {
	var out *auth.User
	_, err := s.write(ctx, func(bool) (*etcd.TxnRequest, error) {
		u, kv, rev, err := s.user(ctx, id, 0)
		if err != nil {
			return nil, err
		}
		oldLogin := u.Login
		lost, err := fn(u)
		if err != nil {
			return nil, err
		}
		u.ID = id
		v, err := json.Marshal(u)
		if err != nil {
			return nil, err
		}
		txn := &etcd.TxnRequest{
			Compare: []etcd.Compare{unchanged(kv.Key, kv)},
			Success: []etcd.Op{put(kv.Key, v)},
		}
		if loginKey(u.Login) != loginKey(oldLogin) {
			nl := s.loginKey(u.Login)
			taken, _, err := s.get(ctx, nl, rev)
			if err != nil {
				return nil, err
			}
			if taken != nil {
				return nil, auth.ErrLoginTaken
			}
			txn.Compare = append(txn.Compare, etcd.CompareVersion(nl, etcd.Equal, 0))
			txn.Success = append(txn.Success, del(s.loginKey(oldLogin)), put(nl, []byte(strconv.FormatInt(id, 10))))
		}
		if err := s.end(ctx, txn, id, rev, auth.UserEnding(lost)); err != nil {
			return nil, err
		}
		out = u
		return txn, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteUser removes the user with its login, sessions and refresh tokens
// in one Txn; see auth.Store.
func (s *Store) DeleteUser(ctx context.Context, id int64) error {
	_, err := s.write(ctx, func(maybe bool) (*etcd.TxnRequest, error) {
		u, kv, rev, err := s.user(ctx, id, 0)
		if maybe && errors.Is(err, auth.ErrUserNotFound) {
			return nil, nil // the last try deleted it
		}
		if err != nil {
			return nil, err
		}
		txn := &etcd.TxnRequest{
			Compare: []etcd.Compare{unchanged(kv.Key, kv)},
			Success: []etcd.Op{del(kv.Key), del(s.loginKey(u.Login))},
		}
		if err := s.end(ctx, txn, id, rev, auth.UserDeletedEnding()); err != nil {
			return nil, err
		}
		return txn, nil
	})
	return err
}
