package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"vmsauth/auth"
)

func (st suite) users(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		db := st.open(t)
		alice := CreateUser(t, db, "Alice")
		bob := CreateUser(t, db, "bob")
		if alice.ID <= 0 || bob.ID <= alice.ID {
			t.Fatalf("ids = %d, %d; want positive ids that grow", alice.ID, bob.ID)
		}
		got, err := db.User(t.Context(), alice.ID)
		if err != nil || !reflect.DeepEqual(got, alice) {
			t.Fatalf("User = %+v, %v, want %+v", got, err, alice)
		}
		got, err = db.UserByLogin(t.Context(), "ALICE")
		if err != nil || got.ID != alice.ID {
			t.Fatalf("UserByLogin(ALICE) = %+v, %v", got, err)
		}
		users, err := db.Users(t.Context())
		if err != nil || len(users) != 2 || users[0].ID != alice.ID || users[1].ID != bob.ID {
			t.Fatalf("Users = %+v, %v", users, err)
		}
		if n, err := db.CountUsers(t.Context()); err != nil || n != 2 {
			t.Fatalf("CountUsers = %d, %v", n, err)
		}
	})
	t.Run("ErrLoginTaken", func(t *testing.T) {
		db := st.open(t)
		CreateUser(t, db, "Alice")
		u := &auth.User{Login: "aLiCe"}
		WantErr(t, db.CreateUser(t.Context(), u), auth.ErrLoginTaken)
		if u.ID != 0 {
			t.Errorf("refused user got id %d", u.ID)
		}
		if n, _ := db.CountUsers(t.Context()); n != 1 {
			t.Errorf("CountUsers = %d, want 1", n)
		}
	})
	t.Run("ErrUserNotFound", func(t *testing.T) {
		db := st.open(t)
		_, err := db.User(t.Context(), 1)
		WantErr(t, err, auth.ErrUserNotFound)
		_, err = db.UserByLogin(t.Context(), "nobody")
		WantErr(t, err, auth.ErrUserNotFound)
		WantErr(t, db.DeleteUser(t.Context(), 1), auth.ErrUserNotFound)
		_, err = db.UpdateUser(t.Context(), 1, func(*auth.User) ([]auth.API, error) { return nil, nil })
		WantErr(t, err, auth.ErrUserNotFound)
	})
}

func (st suite) updateUser(t *testing.T) {
	rename := func(login string) func(*auth.User) ([]auth.API, error) {
		return func(u *auth.User) ([]auth.API, error) { u.Login = login; return nil, nil }
	}
	t.Run("OK", func(t *testing.T) {
		db := st.open(t)
		alice := CreateUser(t, db, "alice")
		got, err := db.UpdateUser(t.Context(), alice.ID, func(u *auth.User) ([]auth.API, error) {
			u.Name = "Alice Liddell"
			u.ID = 42 // ignored: the id is the record's identity
			return nil, nil
		})
		if err != nil || got.Name != "Alice Liddell" || got.ID != alice.ID {
			t.Fatalf("UpdateUser = %+v, %v", got, err)
		}
		if stored, _ := db.User(t.Context(), alice.ID); !reflect.DeepEqual(stored, got) {
			t.Fatalf("stored %+v, want %+v", stored, got)
		}
		if _, err := db.User(t.Context(), 42); !errors.Is(err, auth.ErrUserNotFound) {
			t.Fatalf("User(42): %v", err)
		}
	})
	t.Run("LoginChange", func(t *testing.T) {
		db := st.open(t)
		alice := CreateUser(t, db, "alice")
		if _, err := db.UpdateUser(t.Context(), alice.ID, rename("Alicia")); err != nil {
			t.Fatal(err)
		}
		if u, err := db.UserByLogin(t.Context(), "alicia"); err != nil || u.ID != alice.ID {
			t.Fatalf("UserByLogin(alicia) = %+v, %v", u, err)
		}
		_, err := db.UserByLogin(t.Context(), "alice")
		WantErr(t, err, auth.ErrUserNotFound)
		CreateUser(t, db, "alice") // the old login is free again
	})
	t.Run("LoginCaseChange", func(t *testing.T) {
		db := st.open(t)
		alice := CreateUser(t, db, "alice")
		if _, err := db.UpdateUser(t.Context(), alice.ID, rename("ALICE")); err != nil {
			t.Fatal(err)
		}
		if u, err := db.UserByLogin(t.Context(), "alice"); err != nil || u.Login != "ALICE" {
			t.Fatalf("UserByLogin(alice) = %+v, %v", u, err)
		}
	})
	t.Run("ErrLoginTaken", func(t *testing.T) {
		db := st.open(t)
		alice := CreateUser(t, db, "alice")
		CreateUser(t, db, "bob")
		_, err := db.UpdateUser(t.Context(), alice.ID, rename("Bob"))
		WantErr(t, err, auth.ErrLoginTaken)
		if u, _ := db.User(t.Context(), alice.ID); u.Login != "alice" {
			t.Fatalf("login = %q after a refused rename", u.Login)
		}
		if u, _ := db.UserByLogin(t.Context(), "bob"); u.ID == alice.ID {
			t.Fatal("bob's login Now points at alice")
		}
	})
	t.Run("FnError", func(t *testing.T) {
		db := st.open(t)
		alice := CreateUser(t, db, "alice")
		s := CreateSession(t, db, NewSession(t, alice.ID, auth.APIClient, Now), auth.CreateOptions{})
		boom := errors.New("boom")
		_, err := db.UpdateUser(t.Context(), alice.ID, func(u *auth.User) ([]auth.API, error) {
			u.Login = "changed"
			return auth.AllAPIs, boom
		})
		WantErr(t, err, boom)
		if u, _ := db.User(t.Context(), alice.ID); !reflect.DeepEqual(u, alice) {
			t.Fatalf("user = %+v after fn failed, want %+v", u, alice)
		}
		wantSessions(t, db, alice.ID, s)
	})
	t.Run("EndSomeAPIs", func(t *testing.T) {
		db := st.open(t)
		alice := CreateUser(t, db, "alice")
		CreateSession(t, db, NewSession(t, alice.ID, auth.APIClient, Now), auth.CreateOptions{})
		admin := CreateSession(t, db, NewSession(t, alice.ID, auth.APIAdmin, Now.Add(time.Second)), auth.CreateOptions{})
		integ, r := NewFamily(t, db, alice.ID)
		end := func(apis ...auth.API) {
			t.Helper()
			if _, err := db.UpdateUser(t.Context(), alice.ID, func(*auth.User) ([]auth.API, error) { return apis, nil }); err != nil {
				t.Fatal(err)
			}
		}
		end(auth.APIClient)
		wantSessions(t, db, alice.ID, integ, admin)
		if _, err := db.Refresh(t.Context(), r.Hash); err != nil {
			t.Fatalf("ending client sessions ended a refresh token: %v", err)
		}
		end(auth.APIIntegration)
		wantSessions(t, db, alice.ID, admin)
		_, err := db.Refresh(t.Context(), r.Hash)
		WantErr(t, err, auth.ErrTokenInvalid)
	})
	t.Run("EndSessions", func(t *testing.T) {
		db := st.open(t)
		alice := CreateUser(t, db, "alice")
		bob := CreateUser(t, db, "bob")
		CreateSession(t, db, NewSession(t, alice.ID, auth.APIClient, Now), auth.CreateOptions{})
		_, r := NewFamily(t, db, alice.ID)
		keep := CreateSession(t, db, NewSession(t, bob.ID, auth.APIClient, Now), auth.CreateOptions{})
		if _, err := db.UpdateUser(t.Context(), alice.ID, func(u *auth.User) ([]auth.API, error) {
			u.PasswordHash = "new"
			return auth.AllAPIs, nil
		}); err != nil {
			t.Fatal(err)
		}
		wantSessions(t, db, alice.ID)
		_, err := db.Refresh(t.Context(), r.Hash)
		WantErr(t, err, auth.ErrTokenInvalid)
		wantSessions(t, db, bob.ID, keep)
	})
}

func (st suite) deleteUser(t *testing.T) {
	db := st.open(t)
	alice := CreateUser(t, db, "alice")
	bob := CreateUser(t, db, "bob")
	s := CreateSession(t, db, NewSession(t, alice.ID, auth.APIClient, Now), auth.CreateOptions{})
	is, r := NewFamily(t, db, alice.ID)
	keep := CreateSession(t, db, NewSession(t, bob.ID, auth.APIClient, Now), auth.CreateOptions{})

	if err := db.DeleteUser(t.Context(), alice.ID); err != nil {
		t.Fatal(err)
	}
	_, err := db.User(t.Context(), alice.ID)
	WantErr(t, err, auth.ErrUserNotFound)
	wantSessions(t, db, alice.ID)
	for _, s := range []*auth.Session{s, is} {
		_, _, err = db.SessionByHash(t.Context(), s.TokenHash)
		WantErr(t, err, auth.ErrSessionNotFound)
		_, err = db.Session(t.Context(), s.ID)
		WantErr(t, err, auth.ErrSessionNotFound)
	}
	_, err = db.Refresh(t.Context(), r.Hash)
	WantErr(t, err, auth.ErrTokenInvalid)
	wantSessions(t, db, bob.ID, keep)
	CreateUser(t, db, "ALICE") // the login is free again
}

func (st suite) createSessionCase(t *testing.T) {
	limit := auth.CreateOptions{Now: Now, Limit: 3}
	// fill gives the user limit.Limit live client sessions, oldest first.
	fill := func(t *testing.T, db Backend, userID int64) []*auth.Session {
		t.Helper()
		var sessions []*auth.Session
		for i := range limit.Limit {
			s := NewSession(t, userID, auth.APIClient, Now.Add(-time.Duration(limit.Limit-i)*time.Minute))
			sessions = append(sessions, CreateSession(t, db, s, limit))
		}
		return sessions
	}

	t.Run("OK", func(t *testing.T) {
		db := st.open(t)
		alice := CreateUser(t, db, "alice")
		s := CreateSession(t, db, NewSession(t, alice.ID, auth.APIClient, Now), limit)
		got, err := db.Session(t.Context(), s.ID)
		if err != nil || !reflect.DeepEqual(got, s) {
			t.Fatalf("Session = %+v, %v, want %+v", got, err, s)
		}
	})
	t.Run("ErrSessionLimit", func(t *testing.T) {
		db := st.open(t)
		alice := CreateUser(t, db, "alice")
		full := fill(t, db, alice.ID)
		err := db.CreateSession(t.Context(), NewSession(t, alice.ID, auth.APIClient, Now), limit)
		var limitErr *auth.SessionLimitError
		if !errors.As(err, &limitErr) {
			t.Fatalf("err = %v, want *SessionLimitError", err)
		}
		if limitErr.Limit != limit.Limit || !reflect.DeepEqual(ids(limitErr.Sessions...), ids(full...)) {
			t.Fatalf("SessionLimitError = %d %v, want %d %v", limitErr.Limit, ids(limitErr.Sessions...), limit.Limit, ids(full...))
		}
		wantSessions(t, db, alice.ID, full...)
	})
	t.Run("OtherAPINotCounted", func(t *testing.T) {
		db := st.open(t)
		alice := CreateUser(t, db, "alice")
		full := fill(t, db, alice.ID)
		s := CreateSession(t, db, NewSession(t, alice.ID, auth.APIAdmin, Now), limit)
		wantSessions(t, db, alice.ID, append(full, s)...)
	})
	t.Run("Replace", func(t *testing.T) {
		db := st.open(t)
		alice := CreateUser(t, db, "alice")
		full := fill(t, db, alice.ID)
		opt := limit
		opt.Replace = full[0].ID
		s := CreateSession(t, db, NewSession(t, alice.ID, auth.APIClient, Now), opt)
		wantSessions(t, db, alice.ID, full[1], full[2], s)
		_, _, err := db.SessionByHash(t.Context(), full[0].TokenHash)
		WantErr(t, err, auth.ErrSessionNotFound)
	})
	t.Run("ReplaceOfOtherUser", func(t *testing.T) {
		db := st.open(t)
		alice := CreateUser(t, db, "alice")
		bob := CreateUser(t, db, "bob")
		full := fill(t, db, alice.ID)
		bobs := CreateSession(t, db, NewSession(t, bob.ID, auth.APIClient, Now), limit)
		opt := limit
		opt.Replace = bobs.ID
		WantErr(t, db.CreateSession(t.Context(), NewSession(t, alice.ID, auth.APIClient, Now), opt), auth.ErrSessionNotFound)
		wantSessions(t, db, alice.ID, full...)
		wantSessions(t, db, bob.ID, bobs)
	})
	t.Run("ReplaceOfOtherAPI", func(t *testing.T) {
		db := st.open(t)
		alice := CreateUser(t, db, "alice")
		full := fill(t, db, alice.ID)
		admin := CreateSession(t, db, NewSession(t, alice.ID, auth.APIAdmin, Now), auth.CreateOptions{})
		opt := limit
		opt.Replace = admin.ID
		WantErr(t, db.CreateSession(t.Context(), NewSession(t, alice.ID, auth.APIClient, Now), opt), auth.ErrSessionNotFound)
		wantSessions(t, db, alice.ID, append(full, admin)...)
	})
	t.Run("ReplaceMissing", func(t *testing.T) {
		db := st.open(t)
		alice := CreateUser(t, db, "alice")
		opt := limit
		opt.Replace = "nonesuch"
		WantErr(t, db.CreateSession(t.Context(), NewSession(t, alice.ID, auth.APIClient, Now), opt), auth.ErrSessionNotFound)
		wantSessions(t, db, alice.ID)
	})
	t.Run("ReplaceUndoneAtLimit", func(t *testing.T) {
		// With the limit lowered below the live count, replacing one session
		// still leaves the user at the limit: nothing may change.
		db := st.open(t)
		alice := CreateUser(t, db, "alice")
		full := fill(t, db, alice.ID)
		opt := limit
		opt.Limit, opt.Replace = 2, full[0].ID
		var limitErr *auth.SessionLimitError
		if err := db.CreateSession(t.Context(), NewSession(t, alice.ID, auth.APIClient, Now), opt); !errors.As(err, &limitErr) {
			t.Fatalf("err = %v, want *SessionLimitError", err)
		}
		wantSessions(t, db, alice.ID, full...)
	})
	t.Run("ExpiredClientSessionsRemoved", func(t *testing.T) {
		db := st.open(t)
		alice := CreateUser(t, db, "alice")
		full := fill(t, db, alice.ID)
		expiredIntegration := CreateSession(t, db, NewSession(t, alice.ID, auth.APIIntegration, Now.Add(-2*time.Hour)), auth.CreateOptions{})
		later := limit
		later.Now = Now.Add(90 * time.Minute) // every session of fill has expired
		s := CreateSession(t, db, NewSession(t, alice.ID, auth.APIClient, later.Now), later)
		wantSessions(t, db, alice.ID, expiredIntegration, s)
		_, _, err := db.SessionByHash(t.Context(), full[0].TokenHash)
		WantErr(t, err, auth.ErrSessionNotFound)
	})
	t.Run("ExpiredIntegrationSessionsKept", func(t *testing.T) {
		db := st.open(t)
		alice := CreateUser(t, db, "alice")
		old := CreateSession(t, db, NewSession(t, alice.ID, auth.APIIntegration, Now.Add(-2*time.Hour)), auth.CreateOptions{})
		s := CreateSession(t, db, NewSession(t, alice.ID, auth.APIIntegration, Now), auth.CreateOptions{Now: Now, Limit: 1})
		wantSessions(t, db, alice.ID, old, s)
	})
	t.Run("CheckRefuses", func(t *testing.T) {
		// Check sees the user as stored, and its error writes nothing.
		db := st.open(t)
		alice := CreateUser(t, db, "alice")
		if _, err := db.UpdateUser(t.Context(), alice.ID, func(u *auth.User) ([]auth.API, error) {
			u.PasswordHash = "changed"
			return nil, nil
		}); err != nil {
			t.Fatal(err)
		}
		refused := errors.New("refused")
		opt := limit
		opt.Check = func(u *auth.User) error {
			if u.ID != alice.ID || u.PasswordHash != "changed" {
				return fmt.Errorf("Check saw %+v, not the stored user", u)
			}
			return refused
		}
		WantErr(t, db.CreateSession(t.Context(), NewSession(t, alice.ID, auth.APIClient, Now), opt), refused)
		wantSessions(t, db, alice.ID)
	})
	t.Run("ErrUserNotFound", func(t *testing.T) {
		db := st.open(t)
		WantErr(t, db.CreateSession(t.Context(), NewSession(t, 7, auth.APIClient, Now), limit), auth.ErrUserNotFound)
	})
	t.Run("Refresh", func(t *testing.T) {
		db := st.open(t)
		alice := CreateUser(t, db, "alice")
		_, r := NewFamily(t, db, alice.ID)
		got, err := db.Refresh(t.Context(), r.Hash)
		if err != nil || !reflect.DeepEqual(got, r) {
			t.Fatalf("Refresh = %+v, %v, want %+v", got, err, r)
		}
	})
}

func (st suite) createSessionRace(t *testing.T) {
	db := st.open(t)
	alice := CreateUser(t, db, "alice")
	const limit, logins = 5, 50
	opt := auth.CreateOptions{Now: Now, Limit: limit}
	sessions := make([]*auth.Session, logins)
	for i := range sessions {
		sessions[i] = NewSession(t, alice.ID, auth.APIClient, Now)
	}
	errs := make([]error, logins)
	var wg sync.WaitGroup
	for i := range logins {
		wg.Go(func() { errs[i] = db.CreateSession(t.Context(), sessions[i], opt) })
	}
	wg.Wait()

	ok := 0
	for _, err := range errs {
		var limitErr *auth.SessionLimitError
		switch {
		case err == nil:
			ok++
		case !errors.As(err, &limitErr):
			t.Fatalf("CreateSession: %v", err)
		}
	}
	if got := sessionIDs(t, db, alice.ID); ok != limit || len(got) != limit {
		t.Fatalf("%d logins succeeded and %d sessions exist, want %d", ok, len(got), limit)
	}
}

func (st suite) sessionByHash(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		db := st.open(t)
		alice := CreateUser(t, db, "alice")
		s := CreateSession(t, db, NewSession(t, alice.ID, auth.APIClient, Now.Add(-2*time.Hour)), auth.CreateOptions{})
		gotS, gotU, err := db.SessionByHash(t.Context(), s.TokenHash)
		if err != nil || !reflect.DeepEqual(Checked(gotS), Checked(s)) || !reflect.DeepEqual(gotU, alice) {
			t.Fatalf("SessionByHash = %+v, %+v, %v", gotS, gotU, err)
		}
	})
	t.Run("UserChanges", func(t *testing.T) {
		// Checks reuse decoded users: a change must show at the next check,
		// and what one caller does to its copy must not reach the next.
		db := st.open(t)
		alice := CreateUser(t, db, "alice")
		s := CreateSession(t, db, NewSession(t, alice.ID, auth.APIClient, Now), auth.CreateOptions{})
		_, u, err := db.SessionByHash(t.Context(), s.TokenHash)
		if err != nil {
			t.Fatal(err)
		}
		u.Permissions[0], u.APIs[0], u.Name = "mutated", "mutated", "mutated"
		if _, again, _ := db.SessionByHash(t.Context(), s.TokenHash); !reflect.DeepEqual(again, alice) {
			t.Fatalf("a caller's change to its user reached the next check: %+v", again)
		}
		changed, err := db.UpdateUser(t.Context(), alice.ID, func(u *auth.User) ([]auth.API, error) {
			u.Permissions = []string{"users.view"}
			return nil, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, again, _ := db.SessionByHash(t.Context(), s.TokenHash); !reflect.DeepEqual(again, changed) {
			t.Fatalf("check after a change = %+v, want %+v", again, changed)
		}
	})
	t.Run("ErrSessionNotFound", func(t *testing.T) {
		db := st.open(t)
		_, _, err := db.SessionByHash(t.Context(), RandomHash(t))
		WantErr(t, err, auth.ErrSessionNotFound)
	})
}

func (st suite) userSessionsOrder(t *testing.T) {
	db := st.open(t)
	alice := CreateUser(t, db, "alice")
	newest := CreateSession(t, db, NewSession(t, alice.ID, auth.APIClient, Now.Add(time.Minute)), auth.CreateOptions{})
	z, a := NewSession(t, alice.ID, auth.APIClient, Now), NewSession(t, alice.ID, auth.APIClient, Now)
	if z.ID < a.ID { // created at the same time: ordered by id
		z, a = a, z
	}
	CreateSession(t, db, z, auth.CreateOptions{})
	CreateSession(t, db, a, auth.CreateOptions{})
	oldest := CreateSession(t, db, NewSession(t, alice.ID, auth.APIAdmin, Now.Add(-time.Minute)), auth.CreateOptions{})
	wantSessions(t, db, alice.ID, oldest, a, z, newest)
}

func (st suite) deleteSession(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		db := st.open(t)
		alice := CreateUser(t, db, "alice")
		s := CreateSession(t, db, NewSession(t, alice.ID, auth.APIClient, Now), auth.CreateOptions{})
		keep := CreateSession(t, db, NewSession(t, alice.ID, auth.APIClient, Now.Add(time.Second)), auth.CreateOptions{})
		if err := db.DeleteSession(t.Context(), s.ID); err != nil {
			t.Fatal(err)
		}
		_, _, err := db.SessionByHash(t.Context(), s.TokenHash)
		WantErr(t, err, auth.ErrSessionNotFound)
		wantSessions(t, db, alice.ID, keep)
	})
	t.Run("ErrSessionNotFound", func(t *testing.T) {
		db := st.open(t)
		WantErr(t, db.DeleteSession(t.Context(), "nonesuch"), auth.ErrSessionNotFound)
	})
	t.Run("Chain", func(t *testing.T) {
		// An integration session ends with its family: the other sessions
		// of the chain and its refresh tokens. Another family stays.
		db := st.open(t)
		alice := CreateUser(t, db, "alice")
		s, r := NewFamily(t, db, alice.ID)
		sibling := NewSession(t, alice.ID, auth.APIIntegration, Now.Add(time.Second))
		sibling.Family = s.Family
		CreateSession(t, db, sibling, auth.CreateOptions{})
		other, otherR := NewFamily(t, db, alice.ID)
		client := CreateSession(t, db, NewSession(t, alice.ID, auth.APIClient, Now.Add(2*time.Second)), auth.CreateOptions{})
		if err := db.DeleteSession(t.Context(), sibling.ID); err != nil {
			t.Fatal(err)
		}
		wantSessions(t, db, alice.ID, other, client)
		_, err := db.Refresh(t.Context(), r.Hash)
		WantErr(t, err, auth.ErrTokenInvalid)
		if _, err := db.Refresh(t.Context(), otherR.Hash); err != nil {
			t.Fatalf("the other chain's refresh token: %v", err)
		}
	})
}

func (st suite) touchSession(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		db := st.open(t)
		alice := CreateUser(t, db, "alice")
		s := CreateSession(t, db, NewSession(t, alice.ID, auth.APIClient, Now), auth.CreateOptions{})
		seen, expires := Now.Add(time.Minute), Now.Add(2*time.Hour)
		if err := db.TouchSession(t.Context(), s.TokenHash, seen, expires, "198.51.100.7"); err != nil {
			t.Fatal(err)
		}
		want := *s
		want.LastSeen, want.ExpiresAt, want.IP = seen, expires, "198.51.100.7"
		if got, err := db.Session(t.Context(), s.ID); err != nil || !reflect.DeepEqual(got, &want) {
			t.Fatalf("Session = %+v, %v, want %+v", got, err, want)
		}
		if err := db.TouchSession(t.Context(), s.TokenHash, seen, expires, ""); err != nil {
			t.Fatal(err)
		}
		if got, _, err := db.SessionByHash(t.Context(), s.TokenHash); err != nil || got.IP != "198.51.100.7" {
			t.Fatalf("SessionByHash = %+v, %v; an empty ip must keep the old one", got, err)
		}
	})
	t.Run("Missing", func(t *testing.T) {
		db := st.open(t)
		if err := db.TouchSession(t.Context(), RandomHash(t), Now, Now, ""); err != nil {
			t.Fatal(err)
		}
		_, err := db.Session(t.Context(), "nonesuch")
		WantErr(t, err, auth.ErrSessionNotFound)
	})
}

func (st suite) rotateRefresh(t *testing.T) {
	// next is the session and refresh token a rotation issues; RotateRefresh
	// fills in their user and family.
	next := func(t *testing.T) (*auth.Session, *auth.Refresh) {
		t.Helper()
		return NewSession(t, 0, auth.APIIntegration, Now.Add(time.Minute)),
			&auth.Refresh{Hash: RandomHash(t), CreatedAt: Now, ExpiresAt: Now.Add(24 * time.Hour)}
	}
	t.Run("OK", func(t *testing.T) {
		db := st.open(t)
		alice := CreateUser(t, db, "alice")
		s1, r1 := NewFamily(t, db, alice.ID)
		s2, r2 := next(t)
		if err := db.RotateRefresh(t.Context(), r1.Hash, s2, r2); err != nil {
			t.Fatal(err)
		}
		if s2.UserID != alice.ID || r2.UserID != alice.ID || s2.Family != s1.Family || r2.Family != s1.Family {
			t.Fatalf("rotated session %+v and token %+v do not take user and family from the old token", s2, r2)
		}
		if got, err := db.Refresh(t.Context(), r1.Hash); err != nil || !got.Used {
			t.Fatalf("old token = %+v, %v; want it marked used", got, err)
		}
		if got, err := db.Refresh(t.Context(), r2.Hash); err != nil || !reflect.DeepEqual(got, r2) {
			t.Fatalf("new token = %+v, %v, want %+v", got, err, r2)
		}
		wantSessions(t, db, alice.ID, s1, s2)
	})
	t.Run("ErrTokenInvalid", func(t *testing.T) {
		db := st.open(t)
		alice := CreateUser(t, db, "alice")
		s, r := next(t)
		WantErr(t, db.RotateRefresh(t.Context(), RandomHash(t), s, r), auth.ErrTokenInvalid)
		wantSessions(t, db, alice.ID)
	})
	t.Run("ErrRefreshReused", func(t *testing.T) {
		db := st.open(t)
		alice := CreateUser(t, db, "alice")
		s1, r1 := NewFamily(t, db, alice.ID)
		other, otherR := NewFamily(t, db, alice.ID)
		client := CreateSession(t, db, NewSession(t, alice.ID, auth.APIClient, Now.Add(time.Second)), auth.CreateOptions{})
		s2, r2 := next(t)
		if err := db.RotateRefresh(t.Context(), r1.Hash, s2, r2); err != nil {
			t.Fatal(err)
		}
		s3, r3 := next(t)
		WantErr(t, db.RotateRefresh(t.Context(), r1.Hash, s3, r3), auth.ErrRefreshReused)

		for _, s := range []*auth.Session{s1, s2, s3} {
			_, _, err := db.SessionByHash(t.Context(), s.TokenHash)
			WantErr(t, err, auth.ErrSessionNotFound)
		}
		for _, h := range []auth.TokenHash{r1.Hash, r2.Hash, r3.Hash} {
			_, err := db.Refresh(t.Context(), h)
			WantErr(t, err, auth.ErrTokenInvalid)
		}
		wantSessions(t, db, alice.ID, other, client)
		if _, err := db.Refresh(t.Context(), otherR.Hash); err != nil {
			t.Fatalf("the other family's token: %v", err)
		}
	})
}

func (st suite) audit(t *testing.T) {
	db := st.open(t)
	add := func(at time.Time, login string, max int) {
		t.Helper()
		e := auth.AuditEntry{Time: at, IP: "192.0.2.1", Login: login, API: auth.APIClient, Result: "failed", Reason: "credentials"}
		if err := db.AppendAudit(t.Context(), []auth.AuditEntry{e}, max, 30*24*time.Hour, at); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		add(Now.Add(time.Duration(i)*time.Minute), fmt.Sprintf("user%d", i%4), 10)
	}
	all, err := db.Audit(t.Context(), auth.AuditFilter{})
	if err != nil || len(all) != 10 {
		t.Fatalf("audit holds %d entries, %v; want its bound of 10", len(all), err)
	}
	if !all[0].Time.Equal(Now.Add(19*time.Minute)) || !all[9].Time.Equal(Now.Add(10*time.Minute)) {
		t.Fatalf("want the newest 10, newest first; got %s .. %s", all[0].Time, all[9].Time)
	}
	byLogin, _ := db.Audit(t.Context(), auth.AuditFilter{Login: "USER1"})
	if len(byLogin) != 2 || byLogin[0].Login != "user1" {
		t.Fatalf("by login: %+v", byLogin)
	}
	since, _ := db.Audit(t.Context(), auth.AuditFilter{Since: Now.Add(17 * time.Minute)})
	if len(since) != 3 {
		t.Fatalf("since: %d entries", len(since))
	}
	limited, _ := db.Audit(t.Context(), auth.AuditFilter{Limit: 4})
	if len(limited) != 4 {
		t.Fatalf("limit: %d entries", len(limited))
	}
	// Age bound: a month later one new entry pushes all old ones out.
	add(Now.Add(31*24*time.Hour), "late", 10)
	if all, _ := db.Audit(t.Context(), auth.AuditFilter{}); len(all) != 1 || all[0].Login != "late" {
		t.Fatalf("after a month: %+v", all)
	}
}
