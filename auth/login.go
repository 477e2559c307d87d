package auth

// findLogin finds the user a typed login names.
func (s *Service) findLogin(login string) (*User, error) {
	return s.store.UserByLogin(login)
}
