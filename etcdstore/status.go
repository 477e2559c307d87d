package etcdstore

import (
	"context"
	"slices"

	"vmsauth/etcd"
)

// SiteStatus is what `vmsauth site status` shows of the cluster: its
// members, each as its own status says, and the leader they agree on.
type SiteStatus struct {
	Prefix  string
	Members []MemberStatus
	// Leader is the member id of the leader, 0 when no member reached
	// knows of one (the site has no majority, or is electing).
	Leader uint64
	// Revision is the highest revision a member reached reported.
	Revision int64
	// ListErr says why the member list could not be read.
	ListErr error
	// InitErr is CheckInit's answer: an unfinished site init, or nil.
	InitErr error
}

// MemberStatus is one member. Endpoint is the configured endpoint that
// reached it ("" when none of this box's --etcd URLs is the member's);
// Status is nil when that endpoint did not answer, and Err says why.
type MemberStatus struct {
	etcd.Member
	Endpoint string
	Status   *etcd.Status
	Err      error
}

// Status asks every configured endpoint for its status and the cluster
// for its members. Each member answers for itself, without a majority,
// so a site that lost its majority still shows who is left.
func (s *Store) Status(ctx context.Context) *SiteStatus {
	out := &SiteStatus{Prefix: s.prefix}
	byID := map[uint64]*etcd.Status{}
	errs := map[string]error{}
	for _, ep := range s.c.Endpoints() {
		st, err := s.c.StatusOf(ctx, ep)
		if err != nil {
			errs[ep] = err
			continue
		}
		byID[st.Header.MemberID] = st
		out.Revision = max(out.Revision, st.Header.Revision)
		if st.Leader != 0 {
			out.Leader = st.Leader
		}
	}
	_, members, err := s.c.MemberList(ctx)
	out.ListErr = err
	seen := map[uint64]bool{}
	for _, m := range members {
		ms := MemberStatus{Member: m, Status: byID[m.ID]}
		seen[m.ID] = true
		if ms.Status != nil {
			ms.Endpoint = ms.Status.Endpoint
		} else {
			for _, u := range m.ClientURLs {
				if e, ok := errs[u]; ok {
					ms.Endpoint, ms.Err = u, e
				}
			}
		}
		out.Members = append(out.Members, ms)
	}
	// Members reached but missing from the list (it could not be read).
	for id, st := range byID {
		if !seen[id] {
			out.Members = append(out.Members, MemberStatus{Member: etcd.Member{ID: id, ClientURLs: []string{st.Endpoint}}, Endpoint: st.Endpoint, Status: st})
		}
	}
	if err != nil {
		for ep, e := range errs {
			out.Members = append(out.Members, MemberStatus{Member: etcd.Member{ClientURLs: []string{ep}}, Endpoint: ep, Err: e})
		}
	}
	slices.SortFunc(out.Members, func(a, b MemberStatus) int {
		switch {
		case a.Name != b.Name:
			if a.Name < b.Name {
				return -1
			}
			return 1
		case a.Endpoint < b.Endpoint:
			return -1
		case a.Endpoint > b.Endpoint:
			return 1
		}
		return 0
	})
	if out.Leader != 0 {
		out.InitErr = s.CheckInit(ctx)
	}
	return out
}
