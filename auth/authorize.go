package auth

import (
	"fmt"
	"reflect"
	"slices"
	"time"
)

// Who may manage whom. The admin API's guards check only that a caller
// holds the endpoint's permission (users-update...); these rules decide
// what they may do with it, so that a narrow role cannot grow into a full
// one:
//   - a caller grants only permissions they hold (create and update);
//   - a caller acts on another user (update, password, disable, delete,
//     sessions) only when that user's permissions are a subset of their
//     own, so nobody can take over a more privileged account;
//   - on their own account a caller changes only their name (and their
//     password, with the current one, through ChangeOwnPassword).
//
// APIs are channels, not privileges: granting one is not limited by the
// caller's own.
//
// The rules are pure functions of the actor, the stored target and the
// change; the Service's user-management methods apply them (in the store
// transaction that writes, where the store offers one), so no caller can
// forget them. Root, the command line on the box, is not limited.

// ErrOwnPassword refuses setting one's own password without the current
// one; it is an ErrForbidden.
var ErrOwnPassword = fmt.Errorf("%w: one's own password is changed with the current one", ErrForbidden)

// Actor is on whose behalf a user-management method runs: a signed-in
// admin (ActorOf) or root on the box (Root). The zero Actor may do
// nothing, so a forgotten actor fails closed.
type Actor struct {
	user *User
	root bool
}

// Root is the box's administrator at the command line: every rule here
// is for callers of the admin API, whom root configures.
var Root = Actor{root: true}

// ActorOf is the signed-in user u acting through the admin API.
func ActorOf(u *User) Actor { return Actor{user: u} }

// isSelf reports whether target is the actor's own account.
func (a Actor) isSelf(target *User) bool {
	return a.user != nil && target != nil && a.user.ID == target.ID
}

// MayManage reports whether the actor may act on target at all: root
// may; anyone else when every permission of target is one of theirs (which
// includes their own account).
func (a Actor) MayManage(target *User) bool {
	if a.root {
		return true
	}
	return a.user != nil && a.holds(target.Permissions)
}

// holds reports whether the actor holds every catalog permission in
// names. Names outside the catalog grant nothing, so they are left to
// validation, which refuses them with a clear message.
func (a Actor) holds(names []string) bool {
	if a.root {
		return true
	}
	for _, n := range names {
		if _, known := LookupPermission(n); known && !a.user.Has(n) {
			return false
		}
	}
	return true
}

// manage is MayManage as an error.
func (a Actor) manage(target *User) error {
	if !a.MayManage(target) {
		return ErrForbidden
	}
	return nil
}

// mayCreate allows a new user with only permissions the actor holds.
func (a Actor) mayCreate(n NewUser) error {
	if !a.root && (a.user == nil || !a.holds(n.Permissions)) {
		return ErrForbidden
	}
	return nil
}

// mayUpdate allows p on target: root always; on their own account a
// caller may change only the name; on another user they may manage, any
// field, with permissions they hold. A field set to what is stored is no
// change, so a client that sends a user back as it read it is not refused;
// a patch mixing allowed and forbidden changes is refused whole.
func (a Actor) mayUpdate(target *User, p UserPatch) error {
	if a.root {
		return nil
	}
	if err := a.manage(target); err != nil {
		return err
	}
	changed := p.changes(target)
	if a.isSelf(target) {
		if slices.ContainsFunc(changed, func(f string) bool { return f != "name" }) {
			return ErrForbidden
		}
		return nil
	}
	if p.Permissions != nil && !a.holds(*p.Permissions) {
		return ErrForbidden
	}
	return nil
}

// maySetPassword allows setting target's password without knowing it:
// for another user the actor may manage, never for their own account,
// which needs the current password (ErrOwnPassword).
func (a Actor) maySetPassword(target *User) error {
	if a.root {
		return nil
	}
	if a.isSelf(target) {
		return ErrOwnPassword
	}
	return a.manage(target)
}

// mayDelete allows deleting another user the actor may manage. Nobody
// deletes their own account through the admin API: the box would lose the
// technician setting it up.
func (a Actor) mayDelete(target *User) error {
	if a.isSelf(target) {
		return ErrForbidden
	}
	return a.manage(target)
}

// maySessions allows listing and ending target's sessions: those of a
// user the actor may manage, their own included (ending one's own
// forgotten or stolen session is a safety measure, like logging out).
func (a Actor) maySessions(target *User) error { return a.manage(target) }

// changes names the fields of p whose value differs from u's, as stored:
// times to the second (as the API shows them), an empty list like none. A
// sessions limit is compared as stored, though the API shows an unset one
// as the default 5: writing 5 would pin it, which is a change.
func (p UserPatch) changes(u *User) []string {
	var out []string
	add := func(field string, differs bool) {
		if differs {
			out = append(out, field)
		}
	}
	if p.Name != nil {
		add("name", *p.Name != u.Name)
	}
	if p.APIs != nil {
		add("apis", !slices.Equal(sortedAPIs(*p.APIs), sortedAPIs(u.APIs)))
	}
	if p.Permissions != nil {
		add("permissions", !slices.Equal(sortedPermissions(*p.Permissions), sortedPermissions(u.Permissions)))
	}
	if p.SessionsLimit != nil {
		add("sessions_limit", *p.SessionsLimit != u.SessionsLimit)
	}
	if p.PTZPriority != nil {
		add("ptz_priority", *p.PTZPriority != u.PTZPriority)
	}
	if p.ExpiredAt != nil {
		add("expired_at", !sameTime(*p.ExpiredAt, u.ExpiredAt))
	}
	if p.Disabled != nil {
		add("disabled", *p.Disabled != u.Disabled)
	}
	if p.CanUpdatePassword != nil {
		add("can_update_password", *p.CanUpdatePassword != u.CanUpdatePassword)
	}
	if p.CameraGroups != nil {
		add("admin_camera_groups", !sameList(*p.CameraGroups, u.CameraGroups))
	}
	if p.SubnetGroups != nil {
		add("dhcp_subnet_groups", !sameList(*p.SubnetGroups, u.SubnetGroups))
	}
	return out
}

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Truncate(time.Second).Equal(b.Truncate(time.Second))
}

func sameList[T any](a, b []T) bool {
	return len(a) == 0 && len(b) == 0 || reflect.DeepEqual(a, b)
}
