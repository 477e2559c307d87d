// Package storetest is the contract of auth.Store and auth.AuditLog as
// tests: the cases every storage backend must pass, so that a second
// backend proves it behaves as bbolt does, and the one place tests choose
// the backend they run on. It holds no backend and no rule of its own: the
// rules are auth's (auth/sessions.go), and these cases check that a
// backend applies them inside its transactions.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vmsauth/auth"
	"vmsauth/etcd"
	"vmsauth/etcd/etcdtest"
	"vmsauth/etcdstore"
	"vmsauth/store"
)

// Backend is what a storage backend provides: the store the rules need,
// the audit trail, and Close, which may be called more than once.
type Backend interface {
	auth.Store
	auth.AuditLog
	Close() error
}

// EnvStore names the backend OpenForTest opens: "bbolt", the default, or
// "etcd".
const EnvStore = "VMSAUTH_TEST_STORE"

// EnvEtcd lists the client URLs of a running etcd cluster (comma-separated)
// for OpenForTest's etcd backend. Without it each test starts a cluster of
// one member of its own (etcdtest), which costs about a second a test.
const EnvEtcd = "VMSAUTH_TEST_ETCD"

// OpenForTest opens an empty backend for t, closed when t ends: a bbolt
// file in t.TempDir() unless EnvStore names another. auth and web tests
// open their store through it, so the same tests run on every backend.
// On etcd each call gets a fresh random prefix, deleted when t ends.
func OpenForTest(t testing.TB) Backend {
	t.Helper()
	switch name := os.Getenv(EnvStore); name {
	case "", "bbolt":
		db, err := store.Open(filepath.Join(t.TempDir(), "vmsauth.db"), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		return db
	case "etcd":
		return openEtcd(t)
	default:
		t.Fatalf("%s=%q: no such backend (want bbolt or etcd)", EnvStore, name)
		return nil
	}
}

func openEtcd(t testing.TB) Backend {
	t.Helper()
	var endpoints []string
	if eps := os.Getenv(EnvEtcd); eps != "" {
		endpoints = strings.Split(eps, ",")
	} else {
		endpoints = etcdtest.Start(t, etcdtest.Options{}).Endpoints()
	}
	c, err := etcd.New(etcd.Config{Endpoints: endpoints})
	if err != nil {
		t.Fatal(err)
	}
	var b [8]byte
	rand.Read(b[:])
	prefix := "/vmsauth-test/" + hex.EncodeToString(b[:]) + "/"
	s := etcdstore.New(c, prefix)
	t.Cleanup(func() {
		// A shared cluster keeps no test's keys. The store's Close (its
		// watch, its waiting touches) comes first and closes c.
		_ = s.Close()
		c2, err := etcd.New(etcd.Config{Endpoints: endpoints})
		if err != nil {
			return
		}
		defer c2.Close()
		_, _ = c2.DeleteRange(context.Background(), etcd.DeleteRangeRequest{Key: []byte(prefix), RangeEnd: etcd.PrefixEnd([]byte(prefix))})
	})
	return s
}

// Run runs every case of the contract, each on a fresh, empty backend that
// open returns (and closes when its t ends).
func Run(t *testing.T, open func(t *testing.T) Backend) {
	st := suite{open: open}
	for _, c := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"Users", st.users},
		{"UpdateUser", st.updateUser},
		{"DeleteUser", st.deleteUser},
		{"CreateSession", st.createSessionCase},
		{"CreateSessionRace", st.createSessionRace},
		{"SessionByHash", st.sessionByHash},
		{"UserSessionsOrder", st.userSessionsOrder},
		{"DeleteSession", st.deleteSession},
		{"TouchSession", st.touchSession},
		{"RotateRefresh", st.rotateRefresh},
		{"Audit", st.audit},
	} {
		t.Run(c.name, c.run)
	}
}

type suite struct {
	open func(t *testing.T) Backend
}
