package auth

import (
	"context"
	"errors"
)

// ChangeOwnPassword sets u's password to password after checking current,
// u's current password, and ends every session and token of u, the one
// asking included. It returns *ValidationError for a new password that
// breaks the rules (before any hashing), ErrForbidden when u may not
// change their own password (can_update_password), and ErrBadCredentials
// for a wrong current password, which the caller counts as a failed login
// of u, so this is no way around the login throttle.
func (s *Service) ChangeOwnPassword(ctx context.Context, u *User, current, password string) error {
	var v ValidationError
	checkPasswordRules(&v, "password", password)
	if err := v.Err(); err != nil {
		return err
	}
	if !u.CanUpdatePassword {
		return ErrForbidden
	}
	verified := u.PasswordHash
	ok, err := s.hasher.verify(ctx, verified, current)
	if errors.Is(err, errUnverifiable) {
		// A stored hash verify will not run (see login): no current
		// password can match it.
		s.refusedHash(u)
		return ErrBadCredentials
	}
	if err != nil {
		return err
	}
	if !ok {
		return ErrBadCredentials
	}
	hash, err := s.hasher.hash(ctx, password)
	if err != nil {
		return err
	}
	_, err = s.update(ctx, u.ID, func(stored *User) (bool, error) {
		// The password checked must still be the user's: if it was
		// changed meanwhile (by another admin locking out whoever knew
		// it), "current" is no longer current.
		if stored.PasswordHash != verified {
			return false, ErrBadCredentials
		}
		if !stored.CanUpdatePassword {
			return false, ErrForbidden
		}
		stored.PasswordHash = hash
		stored.UpdatedAt = s.Now()
		return true, nil
	})
	return err
}
