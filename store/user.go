package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"

	bolt "go.etcd.io/bbolt"

	"vmsauth/auth"
)

// CreateUser assigns u.ID and stores u; see auth.Store.
func (db *DB) CreateUser(u *auth.User) error {
	var id int64
	err := db.update(func(tx *bolt.Tx) error {
		if err := loginFree(tx, u.Login); err != nil {
			return err
		}
		seq, err := tx.Bucket(bucketUsers).NextSequence()
		if err != nil {
			return err
		}
		id = int64(seq)
		c := *u
		c.ID = id
		return putUser(tx, &c, "")
	})
	if err == nil {
		u.ID = id
	}
	return err
}

// User returns the user with the id; see auth.Store.
func (db *DB) User(id int64) (u *auth.User, err error) {
	err = db.view(func(tx *bolt.Tx) error {
		u, err = user(tx, id)
		return err
	})
	return u, err
}

// UserByLogin finds a user by login, case-insensitively; see auth.Store.
func (db *DB) UserByLogin(login string) (u *auth.User, err error) {
	err = db.view(func(tx *bolt.Tx) error {
		id, err := loginOwner(tx, login)
		if err != nil {
			return err
		}
		u, err = user(tx, id)
		return err
	})
	return u, err
}

// Users returns every user ordered by id.
func (db *DB) Users() (users []*auth.User, err error) {
	err = db.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketUsers).ForEach(func(k, _ []byte) error {
			u, err := get[auth.User](tx, bucketUsers, k)
			users = append(users, u)
			return err
		})
	})
	return users, err
}

// CountUsers returns how many users exist.
func (db *DB) CountUsers() (n int, err error) {
	err = db.view(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketUsers).Stats().KeyN
		return nil
	})
	return n, err
}

// UpdateUser lets fn change the user and stores the result; see auth.Store.
// fn runs inside the write transaction, so it must not call the store.
func (db *DB) UpdateUser(id int64, fn func(u *auth.User) (end []auth.API, err error)) (u *auth.User, err error) {
	// Checks cache sessions with their users: a change, or the end of the
	// user's sessions, must reach the next check.
	defer db.sessions.reset()
	err = db.update(func(tx *bolt.Tx) error {
		if u, err = user(tx, id); err != nil {
			return err
		}
		oldLogin := u.Login
		end, err := fn(u)
		if err != nil {
			return err
		}
		u.ID = id
		if !bytes.Equal(loginKey(u.Login), loginKey(oldLogin)) {
			if err := loginFree(tx, u.Login); err != nil {
				return err
			}
		}
		if err := putUser(tx, u, oldLogin); err != nil {
			return err
		}
		return endAPIs(tx, id, end)
	})
	if err != nil {
		return nil, err
	}
	return u, nil
}

// DeleteUser removes the user with its sessions and refresh tokens.
func (db *DB) DeleteUser(id int64) error {
	defer db.sessions.reset()
	return db.update(func(tx *bolt.Tx) error {
		u, err := user(tx, id)
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketUsersByLogin).Delete(loginKey(u.Login)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketUsers).Delete(itob(id)); err != nil {
			return err
		}
		return endTokens(tx, id, anyFamily)
	})
}

func user(tx *bolt.Tx, id int64) (*auth.User, error) {
	u, err := get[auth.User](tx, bucketUsers, itob(id))
	if err == nil && u == nil {
		err = auth.ErrUserNotFound
	}
	return u, err
}

// userCache keeps users decoded for token checks, each with the bytes it
// was decoded from. A check still reads the user's record, in its own
// transaction, and reuses the decoded user only while the record is
// byte-for-byte the same: no invalidation to get wrong, and users change
// rarely, so checks almost never decode one.
type userCache struct {
	mu sync.RWMutex
	m  map[int64]cachedUser
}

type cachedUser struct {
	raw []byte
	u   *auth.User
}

// maxCachedUsers bounds the cache; a box has far fewer users.
const maxCachedUsers = 4096

// get returns the user with the id, decoded or from the cache. The user is
// shared: callers clone it before they hand it out.
func (c *userCache) get(tx *bolt.Tx, id int64) (*auth.User, error) {
	v := tx.Bucket(bucketUsers).Get(itob(id))
	if v == nil {
		return nil, auth.ErrUserNotFound
	}
	c.mu.RLock()
	e, ok := c.m[id]
	c.mu.RUnlock()
	if ok && bytes.Equal(e.raw, v) {
		return e.u, nil
	}
	u := new(auth.User)
	if err := json.Unmarshal(v, u); err != nil {
		return nil, fmt.Errorf("decode user %d: %w", id, err)
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCachedUsers {
		c.m = make(map[int64]cachedUser)
	}
	c.m[id] = cachedUser{raw: bytes.Clone(v), u: u}
	c.mu.Unlock()
	return u, nil
}

// cloneUser is a copy of u that shares no memory with it, so that callers
// own what the cache hands out.
func cloneUser(u *auth.User) *auth.User {
	c := *u
	c.ParentID = clonePtr(u.ParentID)
	c.ExpiredAt = clonePtr(u.ExpiredAt)
	c.APIs = slices.Clone(u.APIs)
	c.Permissions = slices.Clone(u.Permissions)
	c.SubnetGroups = slices.Clone(u.SubnetGroups)
	c.CameraGroups = slices.Clone(u.CameraGroups)
	for i := range c.CameraGroups {
		g := &c.CameraGroups[i]
		g.FullPretty, g.ParentID, g.CSAID = clonePtr(g.FullPretty), clonePtr(g.ParentID), clonePtr(g.CSAID)
	}
	return &c
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// loginOwner returns the id of the user with the login, or ErrUserNotFound.
func loginOwner(tx *bolt.Tx, login string) (int64, error) {
	v := tx.Bucket(bucketUsersByLogin).Get(loginKey(login))
	if len(v) != 8 {
		return 0, auth.ErrUserNotFound
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}

// loginFree returns ErrLoginTaken if a user has the login.
func loginFree(tx *bolt.Tx, login string) error {
	if tx.Bucket(bucketUsersByLogin).Get(loginKey(login)) != nil {
		return auth.ErrLoginTaken
	}
	return nil
}

// putUser stores u and points its login at it, dropping oldLogin's entry if
// the login changed. The caller has checked the new login is free.
func putUser(tx *bolt.Tx, u *auth.User, oldLogin string) error {
	logins := tx.Bucket(bucketUsersByLogin)
	if oldLogin != "" && !bytes.Equal(loginKey(oldLogin), loginKey(u.Login)) {
		if err := logins.Delete(loginKey(oldLogin)); err != nil {
			return err
		}
	}
	if err := logins.Put(loginKey(u.Login), itob(u.ID)); err != nil {
		return err
	}
	return put(tx, bucketUsers, itob(u.ID), u)
}

// loginKey makes logins unique regardless of case.
func loginKey(login string) []byte { return []byte(strings.ToLower(login)) }
