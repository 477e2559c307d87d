package auth

import "slices"

// The rules a Store applies inside its write transactions. They are pure:
// a backend reads what they need in its transaction, calls them, and writes
// what they decide, so every backend applies the same rules and changing
// one (which sessions count toward the limit, what a logout ends) is a
// change here alone. store/storetest checks that a backend follows them.

// CountsSessions reports whether CreateSession must read the user's
// sessions to apply LimitSessions, so that a backend reads them only for
// logins that have a limit.
func (o CreateOptions) CountsSessions() bool { return o.Limit > 0 }

// CheckReplace returns ErrSessionNotFound unless old, the session
// CreateOptions.Replace names, may make way for the new session s: it must
// be of the same user and API, so that a login can end neither another
// user's session nor one of another API.
func CheckReplace(old, s *Session) error {
	if old.UserID != s.UserID || old.API != s.API {
		return ErrSessionNotFound
	}
	return nil
}

// LimitSessions applies opt.Limit to the new session s. sessions are its
// user's stored sessions of any API, with activity not yet written put on
// top (a touch extends a client session's life); the one opt.Replace names
// does not count, whether or not the backend has deleted it yet.
//
// Live sessions of s's API count. It returns *SessionLimitError, listing
// them, if there are opt.Limit or more: then nothing is written. Otherwise
// it returns prune, the expired client sessions among them, which the
// backend deletes in the same transaction as clutter. Expired sessions of
// the other APIs stay until the sweep, so that their tokens are answered
// "expired", not "invalid", for a while.
func LimitSessions(s *Session, sessions []*Session, opt CreateOptions) (prune []*Session, err error) {
	if !opt.CountsSessions() {
		return nil, nil
	}
	var live []*Session
	for _, old := range sessions {
		switch {
		case old.API != s.API, opt.Replace != "" && old.ID == opt.Replace:
		case old.Live(opt.Now):
			live = append(live, old)
		case old.API == APIClient:
			prune = append(prune, old)
		}
	}
	if len(live) >= opt.Limit {
		return nil, &SessionLimitError{Limit: opt.Limit, Sessions: live}
	}
	return prune, nil
}

// RotateRefresh decides what presenting the stored refresh token old does.
// One not used before is spent: RotateRefresh marks old used and gives the
// new session s and refresh token r old's user and family, for the backend
// to store all three. A used one presented again means it was stolen, or
// its client was: RotateRefresh reports reused and returns the Ending of
// old's whole chain, which the backend commits (the transaction succeeds)
// before it returns ErrRefreshReused.
func RotateRefresh(old *Refresh, s *Session, r *Refresh) (end Ending, reused bool) {
	if old.Used {
		return Ending{Family: old.Family}, true
	}
	old.Used = true
	s.UserID, r.UserID = old.UserID, old.UserID
	s.Family, r.Family = old.Family, old.Family
	return Ending{}, false
}

// Ending names which of one user's sessions and refresh tokens a change
// ends, in the change's own transaction. The zero Ending ends nothing.
type Ending struct {
	// Session ends the session with this public id.
	Session string
	// Family ends every session and refresh token of one refresh chain.
	Family string
	// APIs ends every session of these APIs and, with the integration
	// API, every refresh token, since those mint integration sessions.
	APIs []API
}

// SessionEnding is what ending the session s ends: s alone or, for a
// session of a refresh chain (an integration session), the whole chain.
// Otherwise the refresh token issued with it would mint a new pair for
// another 30 days.
func SessionEnding(s *Session) Ending {
	if s.Family != "" {
		return Ending{Family: s.Family}
	}
	return Ending{Session: s.ID}
}

// UserEnding is what a change to a user ends, given lost, the APIs the
// change ends the sessions of (see Service.update: a new password or a
// disabling ends all, a withdrawn API its own).
func UserEnding(lost []API) Ending { return Ending{APIs: lost} }

// UserDeletedEnding is what deleting a user ends: everything of theirs.
func UserDeletedEnding() Ending { return Ending{APIs: AllAPIs} }

// Ends reports whether e ends the session s.
func (e Ending) Ends(s *Session) bool {
	return s.ID == e.Session && e.Session != "" ||
		s.Family == e.Family && e.Family != "" ||
		slices.Contains(e.APIs, s.API)
}

// EndsRefresh reports whether e ends the refresh token r.
func (e Ending) EndsRefresh(r *Refresh) bool {
	return r.Family == e.Family && e.Family != "" || slices.Contains(e.APIs, APIIntegration)
}

// EndsRefreshes reports whether e may end any refresh token, so that a
// backend reads the user's refresh tokens only when it does.
func (e Ending) EndsRefreshes() bool {
	return e.Family != "" || slices.Contains(e.APIs, APIIntegration)
}

// Only returns the id of the one session e ends, when that is all it ends,
// so that a backend can delete it without reading the user's others.
func (e Ending) Only() (id string, ok bool) {
	return e.Session, e.Session != "" && e.Family == "" && len(e.APIs) == 0
}

// IsZero reports whether e ends nothing.
func (e Ending) IsZero() bool { return e.Session == "" && e.Family == "" && len(e.APIs) == 0 }
