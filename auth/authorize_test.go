package auth_test

import (
	"context"
	"errors"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"vmsauth/auth"
	"vmsauth/store/storetest"
)

// TestActorMayManage checks the subset rule on its own: who may act on
// whom, by permissions alone.
func TestActorMayManage(t *testing.T) {
	admin := &auth.User{ID: 1, Permissions: auth.AllPermissionNames()}
	tech := &auth.User{ID: 2, Permissions: []string{"users-update", "cameras-view"}}
	peer := &auth.User{ID: 3, Permissions: []string{"cameras-view", "users-update"}}
	cam := &auth.User{ID: 4, Permissions: []string{"cameras-view"}}
	stale := &auth.User{ID: 5, Permissions: []string{"cameras-view", "no-longer-in-catalog"}}
	for _, tt := range []struct {
		name   string
		actor  auth.Actor
		target *auth.User
		want   bool
	}{
		{"AdminOnTech", auth.ActorOf(admin), tech, true},
		{"TechOnAdmin", auth.ActorOf(tech), admin, false},
		{"TechOnPeer", auth.ActorOf(tech), peer, true},
		{"TechOnCam", auth.ActorOf(tech), cam, true},
		{"TechOnSelf", auth.ActorOf(tech), tech, true},
		{"CamOnTech", auth.ActorOf(cam), tech, false},
		{"TechOnStaleNames", auth.ActorOf(tech), stale, true},
		{"RootOnAdmin", auth.Root, admin, true},
		{"ZeroActor", auth.Actor{}, cam, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.actor.MayManage(tt.target); got != tt.want {
				t.Fatalf("MayManage = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestServiceEnforcesActor checks that the Service's methods apply the
// rules themselves, whoever calls them.
func TestServiceEnforcesActor(t *testing.T) {
	svc, _, _ := newService(t, bcrypt.MinCost)
	ctx := context.Background()
	admin := mustCreate(t, svc, auth.NewUser{Login: "admin", APIs: auth.AllAPIs, Permissions: auth.AllPermissionNames()})
	tech := mustCreate(t, svc, auth.NewUser{Login: "tech", APIs: []auth.API{auth.APIAdmin}, Permissions: []string{"users-update", "cameras-view"}})
	as := auth.ActorOf(tech)
	name := "Renamed"
	for _, tt := range []struct {
		name string
		call func() error
		want error
	}{
		{"CreateForeign", func() error {
			_, err := svc.CreateUser(ctx, as, auth.NewUser{Login: "x1", Password: "password1", Permissions: []string{"servers-update"}})
			return err
		}, auth.ErrForbidden},
		{"CreateUnknownPermission", func() error {
			_, err := svc.CreateUser(ctx, as, auth.NewUser{Login: "x2", Password: "password1", Permissions: []string{"fly"}})
			var v *auth.ValidationError
			if errors.As(err, &v) {
				return nil
			}
			return err
		}, nil},
		{"UpdateAdmin", func() error {
			_, err := svc.UpdateUser(t.Context(), as, admin.ID, auth.UserPatch{Name: &name})
			return err
		}, auth.ErrForbidden},
		{"UpdateOwnName", func() error {
			_, err := svc.UpdateUser(t.Context(), as, tech.ID, auth.UserPatch{Name: &name})
			return err
		}, nil},
		{"PasswordAdmin", func() error { _, err := svc.SetPassword(ctx, as, admin.ID, "password2"); return err }, auth.ErrForbidden},
		{"PasswordOwn", func() error { _, err := svc.SetPassword(ctx, as, tech.ID, "password2"); return err }, auth.ErrOwnPassword},
		{"DisableAdmin", func() error { _, err := svc.SetDisabled(t.Context(), as, admin.ID, true); return err }, auth.ErrForbidden},
		{"GrantOwn", func() error { _, err := svc.Grant(t.Context(), as, tech.ID, []string{"archive-view"}); return err }, auth.ErrForbidden},
		{"RevokeAdmin", func() error { _, err := svc.Revoke(t.Context(), as, admin.ID, []string{"archive-view"}); return err }, auth.ErrForbidden},
		{"DeleteAdmin", func() error { return svc.DeleteUser(t.Context(), as, admin.ID) }, auth.ErrForbidden},
		{"DeleteOwn", func() error { return svc.DeleteUser(t.Context(), as, tech.ID) }, auth.ErrForbidden},
		{"SessionsAdmin", func() error { _, err := svc.UserSessions(t.Context(), as, admin.ID); return err }, auth.ErrForbidden},
		{"SessionsOwn", func() error { _, err := svc.UserSessions(t.Context(), as, tech.ID); return err }, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	a, err := svc.User(t.Context(), admin.ID)
	if err != nil || a.Name != "admin" || a.Disabled || len(a.Permissions) != len(auth.Catalog) || a.PasswordHash != admin.PasswordHash {
		t.Fatalf("admin after refusals: %+v, %v", a, err)
	}
}

// raceStore is a real store whose next UpdateUser is preceded by another
// admin's password reset, as if it had landed while the current password
// was being checked.
type raceStore struct {
	storetest.Backend
	resetTo string
}

func (r *raceStore) UpdateUser(ctx context.Context, id int64, fn func(u *auth.User) ([]auth.API, error)) (*auth.User, error) {
	if r.resetTo != "" {
		hash := r.resetTo
		r.resetTo = ""
		if _, err := r.Backend.UpdateUser(ctx, id, func(u *auth.User) ([]auth.API, error) { u.PasswordHash = hash; return auth.AllAPIs, nil }); err != nil {
			return nil, err
		}
	}
	return r.Backend.UpdateUser(ctx, id, fn)
}

// TestChangeOwnPasswordRace checks that a password reset landing between
// the check of the current password and the write wins: the current
// password is no longer current.
func TestChangeOwnPasswordRace(t *testing.T) {
	rs := &raceStore{Backend: storetest.OpenForTest(t)}
	svc, err := auth.New(rs, auth.Config{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	u, err := svc.CreateUser(ctx, auth.Root, auth.NewUser{Login: "tech", Password: "password1", APIs: []auth.API{auth.APIAdmin}})
	if err != nil {
		t.Fatal(err)
	}
	reset, err := bcrypt.GenerateFromPassword([]byte("reset-by-admin"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	rs.resetTo = string(reset)
	if err := svc.ChangeOwnPassword(ctx, u, "password1", "mine-again-1"); !errors.Is(err, auth.ErrBadCredentials) {
		t.Fatalf("err = %v, want ErrBadCredentials", err)
	}
	if got, err := svc.User(t.Context(), u.ID); err != nil || got.PasswordHash != string(reset) {
		t.Fatalf("hash after the race: %v; want the admin's reset", err)
	}
	// Without a race, the new password changes it.
	fresh, err := svc.User(t.Context(), u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.ChangeOwnPassword(ctx, fresh, "reset-by-admin", "mine-again-1"); err != nil {
		t.Fatal(err)
	}
}
