package etcd

import (
	"context"
	"encoding/json"
)

// Lease is a granted lease: its ID and its time to live in seconds.
type Lease struct {
	Header Header
	ID     int64
	TTL    int64
}

func (l *Lease) UnmarshalJSON(b []byte) error {
	var w struct {
		Header Header `json:"header"`
		ID     num    `json:"ID"`
		TTL    num    `json:"TTL"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*l = Lease{w.Header, int64(w.ID), int64(w.TTL)}
	return nil
}

// Grant makes a lease of ttl seconds (etcd raises a TTL below its minimum,
// about 1.5 times the election timeout). A lease is a write: on
// ErrMaybeApplied an unused lease may live on until its TTL ends, which
// harms nothing.
func (c *Client) Grant(ctx context.Context, ttl int64) (*Lease, error) {
	in := struct {
		TTL int64 `json:"TTL,string"`
	}{ttl}
	var out Lease
	if err := c.call(ctx, "/v3/lease/grant", in, &out, true); err != nil {
		return nil, err
	}
	return &out, nil
}

// KeepAliveOnce renews a lease for its full TTL, once; call it well within
// the TTL (a third of it, say). It returns ErrLeaseNotFound for a lease that
// expired or was revoked. Renewing twice is harmless, so it is retried on
// another endpoint like a read.
func (c *Client) KeepAliveOnce(ctx context.Context, id int64) (*Lease, error) {
	in := struct {
		ID int64 `json:"ID,string"`
	}{id}
	// The keep-alive is a gRPC stream: the gateway answers one request
	// with one {"result":...} and ends the stream when the body ends.
	var out struct {
		Result *Lease       `json:"result"`
		Error  *streamError `json:"error"`
	}
	if err := c.call(ctx, "/v3/lease/keepalive", in, &out, false); err != nil {
		return nil, err
	}
	if out.Error != nil {
		return nil, out.Error.err("")
	}
	if out.Result == nil || out.Result.TTL <= 0 {
		return nil, &Error{Message: "lease not found", Code: codeNotFound, Kinds: []error{ErrLeaseNotFound}}
	}
	return out.Result, nil
}

// Revoke ends a lease now and deletes its keys. Revoking an ended lease
// returns ErrLeaseNotFound.
func (c *Client) Revoke(ctx context.Context, id int64) error {
	in := struct {
		ID int64 `json:"ID,string"`
	}{id}
	var out struct {
		Header Header `json:"header"`
	}
	return c.call(ctx, "/v3/lease/revoke", in, &out, true)
}

// TimeToLive returns the seconds a lease has left (ErrLeaseNotFound if
// none).
func (c *Client) TimeToLive(ctx context.Context, id int64) (*Lease, error) {
	in := struct {
		ID int64 `json:"ID,string"`
	}{id}
	var out Lease
	if err := c.call(ctx, "/v3/lease/timetolive", in, &out, false); err != nil {
		return nil, err
	}
	if out.TTL < 0 {
		return nil, &Error{Message: "lease not found", Code: codeNotFound, Kinds: []error{ErrLeaseNotFound}}
	}
	return &out, nil
}

// streamError is how the gateway reports a failure inside a stream:
// {"error":{"grpc_code":14,"http_code":503,"message":"...","http_status":"..."}}.
type streamError struct {
	GRPCCode int    `json:"grpc_code"`
	Message  string `json:"message"`
}

func (s *streamError) err(endpoint string) error {
	return classify(endpoint, s.GRPCCode, s.Message, false)
}
