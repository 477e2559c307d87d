package etcdstore_test

import (
	"testing"
	"time"

	"vmsauth/auth"
	"vmsauth/etcd"
	"vmsauth/etcd/etcdtest"
	"vmsauth/etcdstore"
	"vmsauth/store/storetest"
)

// An integration that logs in again and again holds many sessions and
// refresh tokens at once. Ending them (a password change, a disable, a
// deletion, a withdrawn API) once deleted three keys per session and two
// per refresh token in one Txn, which etcd refuses past 128 operations:
// with 60 of each, the user could not be changed at all (the test has 120). Each ending here
// must now succeed, end every token at once (on this box and on another),
// and leave no key of them behind after a sweep.
func TestEndManySessions(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	ctx := t.Context()
	setup := func(t *testing.T) (a, b *etcdstore.Store, u *auth.User, fams []*auth.Session, refs []*auth.Refresh, client *auth.Session) {
		a, b = twoBoxes(t, c)
		u = storetest.CreateUser(t, a, "integrator")
		for range 120 {
			s, r := storetest.NewFamily(t, a, u.ID)
			fams, refs = append(fams, s), append(refs, r)
		}
		client = storetest.CreateSession(t, a, storetest.NewSession(t, u.ID, auth.APIClient, storetest.Now), auth.CreateOptions{})
		cachedOn(t, b, fams[0], 1)
		return a, b, u, fams, refs, client
	}
	ended := func(t *testing.T, stores []*etcdstore.Store, sessions []*auth.Session, refs []*auth.Refresh) {
		t.Helper()
		for _, st := range stores {
			eventually(t, "the tokens are refused", func() bool {
				_, _, err := st.SessionByHash(ctx, sessions[0].TokenHash)
				return err != nil
			})
			for _, s := range sessions {
				if _, _, err := st.SessionByHash(ctx, s.TokenHash); err == nil {
					t.Fatalf("session %s still accepted", s.ID)
				}
				if _, err := st.Session(ctx, s.ID); err == nil {
					t.Fatalf("session %s still listed", s.ID)
				}
			}
			for _, r := range refs {
				_, err := st.Refresh(ctx, r.Hash)
				storetest.WantErr(t, err, auth.ErrTokenInvalid)
			}
		}
	}
	// keys counts the keys under the store's prefix but the site's own.
	keys := func(t *testing.T, st *etcdstore.Store, prefix string) int64 {
		t.Helper()
		cl, err := etcd.New(etcd.Config{Endpoints: c.Endpoints()})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		p := []byte(st.Prefix() + prefix)
		r, err := cl.Range(ctx, etcd.RangeRequest{Key: p, RangeEnd: etcd.PrefixEnd(p), CountOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		return r.Count
	}
	swept := func(t *testing.T, st *etcdstore.Store, left int64) {
		t.Helper()
		if _, err := st.Sweep(storetest.Now, 7*24*time.Hour); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"s/", "i/", "us/"} {
			if n := keys(t, st, p); n != left {
				t.Errorf("after the sweep %s holds %d keys, want %d", p, n, left)
			}
		}
		for _, p := range []string{"r/", "ur/"} {
			if n := keys(t, st, p); n != 0 {
				t.Errorf("after the sweep %s holds %d keys, want none", p, n)
			}
		}
	}

	t.Run("PasswordChange", func(t *testing.T) {
		a, b, u, fams, refs, client := setup(t)
		if _, err := a.UpdateUser(ctx, u.ID, func(u *auth.User) ([]auth.API, error) {
			u.PasswordHash = "another hash"
			return auth.AllAPIs, nil
		}); err != nil {
			t.Fatalf("password change of a user with 121 sessions and 120 refresh tokens: %v", err)
		}
		ended(t, []*etcdstore.Store{a, b}, append(fams, client), refs)
		swept(t, a, 0)
	})
	t.Run("Delete", func(t *testing.T) {
		a, b, u, fams, refs, client := setup(t)
		if err := a.DeleteUser(ctx, u.ID); err != nil {
			t.Fatalf("deleting a user with 121 sessions and 120 refresh tokens: %v", err)
		}
		ended(t, []*etcdstore.Store{a, b}, append(fams, client), refs)
		swept(t, a, 0)
	})
	t.Run("WithdrawnAPI", func(t *testing.T) {
		a, b, u, fams, refs, client := setup(t)
		if _, err := a.UpdateUser(ctx, u.ID, func(u *auth.User) ([]auth.API, error) {
			return []auth.API{auth.APIIntegration}, nil
		}); err != nil {
			t.Fatalf("withdrawing the integration API of a user with 120 of its sessions: %v", err)
		}
		ended(t, []*etcdstore.Store{a, b}, fams, refs)
		if _, _, err := b.SessionByHash(ctx, client.TokenHash); err != nil {
			t.Errorf("the client session, of an API the user keeps: %v", err)
		}
		swept(t, a, 1)
	})
}
