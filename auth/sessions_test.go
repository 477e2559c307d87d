package auth_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"vmsauth/auth"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func sess(id string, api auth.API, expires time.Duration) *auth.Session {
	return &auth.Session{ID: id, UserID: 7, API: api, ExpiresAt: t0.Add(expires)}
}

func sessionIDs(sessions []*auth.Session) []string {
	var ids []string
	for _, s := range sessions {
		ids = append(ids, s.ID)
	}
	return ids
}

func TestLimitSessions(t *testing.T) {
	stored := []*auth.Session{
		sess("live1", auth.APIClient, time.Hour),
		sess("dead1", auth.APIClient, -time.Hour),
		sess("live2", auth.APIClient, time.Minute),
		sess("admin", auth.APIAdmin, time.Hour),
		sess("deadadmin", auth.APIAdmin, -time.Hour),
		sess("ends-now", auth.APIClient, 0), // not live at its expiry
	}
	client := sess("new", auth.APIClient, time.Hour)
	for _, tc := range []struct {
		name      string
		s         *auth.Session
		opt       auth.CreateOptions
		prune     []string
		limitHits []string // the live sessions a *SessionLimitError lists
	}{
		{name: "OK", s: client, opt: auth.CreateOptions{Now: t0, Limit: 3}, prune: []string{"dead1", "ends-now"}},
		{name: "ErrSessionLimit", s: client, opt: auth.CreateOptions{Now: t0, Limit: 2}, limitHits: []string{"live1", "live2"}},
		{name: "ReplacedDoesNotCount", s: client, opt: auth.CreateOptions{Now: t0, Limit: 2, Replace: "live1"}, prune: []string{"dead1", "ends-now"}},
		{name: "NoLimit", s: client, opt: auth.CreateOptions{Now: t0}},
		// Expired sessions of the other APIs stay, to answer "expired".
		{name: "OtherAPIKeepsExpired", s: sess("new", auth.APIAdmin, time.Hour), opt: auth.CreateOptions{Now: t0, Limit: 2}},
		{name: "OtherAPICountsAlone", s: sess("new", auth.APIAdmin, time.Hour), opt: auth.CreateOptions{Now: t0, Limit: 1}, limitHits: []string{"admin"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prune, err := auth.LimitSessions(tc.s, stored, tc.opt)
			var le *auth.SessionLimitError
			switch {
			case tc.limitHits != nil:
				if !errors.As(err, &le) || le.Limit != tc.opt.Limit || !slices.Equal(sessionIDs(le.Sessions), tc.limitHits) || prune != nil {
					t.Fatalf("LimitSessions = %v, %v; want a limit error listing %v and nothing pruned", sessionIDs(prune), err, tc.limitHits)
				}
			case err != nil || !slices.Equal(sessionIDs(prune), tc.prune):
				t.Fatalf("LimitSessions = %v, %v; want %v pruned", sessionIDs(prune), err, tc.prune)
			}
		})
	}
}

func TestCheckReplace(t *testing.T) {
	s := sess("new", auth.APIClient, time.Hour)
	other := sess("old", auth.APIClient, time.Hour)
	other.UserID = 8
	for _, tc := range []struct {
		name string
		old  *auth.Session
		want error
	}{
		{"OK", sess("old", auth.APIClient, time.Hour), nil},
		{"ErrOtherUser", other, auth.ErrSessionNotFound},
		{"ErrOtherAPI", sess("old", auth.APIAdmin, time.Hour), auth.ErrSessionNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := auth.CheckReplace(tc.old, s); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("CheckReplace = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestRotateRefresh(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		old := &auth.Refresh{UserID: 7, Family: "f1"}
		s, r := &auth.Session{}, &auth.Refresh{}
		e, reused := auth.RotateRefresh(old, s, r)
		if reused || !e.IsZero() || !old.Used {
			t.Fatalf("RotateRefresh = %+v, %v, old used %v; want a spent token and no ending", e, reused, old.Used)
		}
		if s.UserID != 7 || r.UserID != 7 || s.Family != "f1" || r.Family != "f1" {
			t.Fatalf("new pair %+v, %+v: want user 7, family f1 from the old token", s, r)
		}
	})
	t.Run("ErrRefreshReused", func(t *testing.T) {
		old := &auth.Refresh{UserID: 7, Family: "f1", Used: true}
		s, r := &auth.Session{}, &auth.Refresh{}
		e, reused := auth.RotateRefresh(old, s, r)
		if !reused || e.Family != "f1" || s.UserID != 0 || r.Family != "" {
			t.Fatalf("RotateRefresh = %+v, %v; want the family ended and the new pair untouched", e, reused)
		}
	})
}

func TestEndings(t *testing.T) {
	client := sess("c", auth.APIClient, time.Hour)
	admin := sess("a", auth.APIAdmin, time.Hour)
	chain1 := sess("i1", auth.APIIntegration, time.Hour)
	chain1.Family = "f1"
	chain2 := sess("i2", auth.APIIntegration, time.Hour)
	chain2.Family = "f2"
	all := []*auth.Session{client, admin, chain1, chain2}
	r1, r2 := &auth.Refresh{Family: "f1"}, &auth.Refresh{Family: "f2"}
	for _, tc := range []struct {
		name     string
		e        auth.Ending
		sessions []string
		refresh  []string
	}{
		{"Logout", auth.SessionEnding(client), []string{"c"}, nil},
		{"LogoutOfChain", auth.SessionEnding(chain1), []string{"i1"}, []string{"f1"}},
		{"LostClient", auth.UserEnding([]auth.API{auth.APIClient}), []string{"c"}, nil},
		{"LostIntegration", auth.UserEnding([]auth.API{auth.APIIntegration}), []string{"i1", "i2"}, []string{"f1", "f2"}},
		{"NoChange", auth.UserEnding(nil), nil, nil},
		{"Deleted", auth.UserDeletedEnding(), []string{"c", "a", "i1", "i2"}, []string{"f1", "f2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var gotS, gotR []string
			for _, s := range all {
				if tc.e.Ends(s) {
					gotS = append(gotS, s.ID)
				}
			}
			for _, r := range []*auth.Refresh{r1, r2} {
				if tc.e.EndsRefresh(r) {
					gotR = append(gotR, r.Family)
				}
			}
			if !slices.Equal(gotS, tc.sessions) || !slices.Equal(gotR, tc.refresh) {
				t.Fatalf("%+v ends sessions %v and refresh tokens %v; want %v and %v", tc.e, gotS, gotR, tc.sessions, tc.refresh)
			}
			if tc.e.EndsRefreshes() != (tc.refresh != nil) || tc.e.IsZero() != (tc.sessions == nil) {
				t.Fatalf("%+v: EndsRefreshes %v, IsZero %v", tc.e, tc.e.EndsRefreshes(), tc.e.IsZero())
			}
		})
	}
	if id, ok := auth.SessionEnding(client).Only(); !ok || id != "c" {
		t.Fatalf("a logout's ending: Only = %q, %v; want the one session", id, ok)
	}
	if _, ok := auth.SessionEnding(chain1).Only(); ok {
		t.Fatal("a chain's ending reports one session only")
	}
}
