package auth

import (
	"context"
	"slices"
	"time"
)

// A session lives no longer than the access that let it be made. Hiding
// the tokens of an account that may no longer use them is not enough:
// giving the access back would bring every old token back to life. So
// every change to a user goes through update, which ends, in the same
// transaction, the sessions the change takes away.

// update applies fn to the stored user with id. fn returns endAll to end
// every session and refresh token of the user whatever else changed (a new
// password). Besides, the change ends:
//   - every session, if the account is disabled or expired after it, or
//     was before it: reviving an account never revives its old tokens;
//   - the sessions of each API the user no longer has, and with the
//     integration API its refresh tokens.
func (s *Service) update(ctx context.Context, id int64, fn func(u *User) (endAll bool, err error)) (*User, error) {
	return s.store.UpdateUser(ctx, id, func(u *User) ([]API, error) {
		before := User{APIs: slices.Clone(u.APIs), Disabled: u.Disabled, ExpiredAt: clone(u.ExpiredAt)}
		endAll, err := fn(u)
		if err != nil {
			return nil, err
		}
		return lostAccess(&before, u, s.Now(), endAll), nil
	})
}

// lostAccess lists the APIs whose sessions a change from before to after
// ends at now; see update.
func lostAccess(before, after *User, now time.Time, endAll bool) []API {
	if endAll || before.usable(now) != nil || after.usable(now) != nil {
		return AllAPIs
	}
	var lost []API
	for _, a := range before.APIs {
		if !after.Can(a) {
			lost = append(lost, a)
		}
	}
	return lost
}

func clone[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
