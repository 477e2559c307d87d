package etcd

import (
	"context"
	"encoding/json"
	"errors"
)

// Status is one member's view of itself (/v3/maintenance/status).
type Status struct {
	Endpoint         string
	Header           Header
	Version          string
	DBSize           int64 // bytes of the backend file
	DBSizeInUse      int64 // bytes in use in it (the rest is free pages)
	Leader           uint64
	RaftIndex        uint64
	RaftTerm         uint64
	RaftAppliedIndex uint64
	Errors           []string // alarms, such as "NOSPACE"
}

func (s *Status) UnmarshalJSON(b []byte) error {
	var w struct {
		Header           Header   `json:"header"`
		Version          string   `json:"version"`
		DBSize           num      `json:"dbSize"`
		DBSizeInUse      num      `json:"dbSizeInUse"`
		Leader           unum     `json:"leader"`
		RaftIndex        unum     `json:"raftIndex"`
		RaftTerm         unum     `json:"raftTerm"`
		RaftAppliedIndex unum     `json:"raftAppliedIndex"`
		Errors           []string `json:"errors"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*s = Status{s.Endpoint, w.Header, w.Version, int64(w.DBSize), int64(w.DBSizeInUse), uint64(w.Leader),
		uint64(w.RaftIndex), uint64(w.RaftTerm), uint64(w.RaftAppliedIndex), w.Errors}
	return nil
}

// StatusOf asks one member, by its endpoint as configured, for its status:
// it does not move on to another member, as the answer is about this one.
// Leader is 0 when the member knows of no leader.
func (c *Client) StatusOf(ctx context.Context, endpoint string) (*Status, error) {
	for i, ep := range c.eps {
		if ep.url != endpoint {
			continue
		}
		out := Status{Endpoint: endpoint}
		if err := c.callOn(ctx, "/v3/maintenance/status", struct{}{}, &out, false, i); err != nil {
			return nil, err
		}
		return &out, nil
	}
	return nil, errors.New("etcd: " + endpoint + " is not one of the client's endpoints")
}

// Member is one member of the cluster as the cluster lists it.
type Member struct {
	ID         uint64
	Name       string // empty for a member added but not started yet
	PeerURLs   []string
	ClientURLs []string
	IsLearner  bool
}

func (m *Member) UnmarshalJSON(b []byte) error {
	var w struct {
		ID         unum     `json:"ID"`
		Name       string   `json:"name"`
		PeerURLs   []string `json:"peerURLs"`
		ClientURLs []string `json:"clientURLs"`
		IsLearner  bool     `json:"isLearner"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*m = Member{uint64(w.ID), w.Name, w.PeerURLs, w.ClientURLs, w.IsLearner}
	return nil
}

// MemberList lists the cluster's members (from any one member).
func (c *Client) MemberList(ctx context.Context) (Header, []Member, error) {
	var out struct {
		Header  Header   `json:"header"`
		Members []Member `json:"members"`
	}
	if err := c.call(ctx, "/v3/cluster/member/list", struct{}{}, &out, false); err != nil {
		return Header{}, nil, err
	}
	return out.Header, out.Members, nil
}
