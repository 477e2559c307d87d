package etcd

import (
	"context"
	"encoding/json"
)

// PrefixEnd returns the range end that, with the prefix as key, covers every
// key starting with the prefix: the prefix with its last byte below 0xff
// incremented and what follows dropped. For an empty prefix or one of only
// 0xff bytes it returns []byte{0}, etcd's "to the end of the key space".
func PrefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return []byte{0}
}

// RangeRequest reads one key, or the keys in [Key, RangeEnd) when RangeEnd
// is set (PrefixEnd(Key) for a prefix).
type RangeRequest struct {
	Key      []byte `json:"key"`
	RangeEnd []byte `json:"range_end,omitempty"`
	// Limit caps the keys returned (0: no cap); Count still counts all.
	Limit int64 `json:"limit,string,omitempty"`
	// Revision reads the store as it was at that revision (0: now). One
	// revision for several reads gives a consistent view.
	Revision int64 `json:"revision,string,omitempty"`
	// Serializable reads the member's own copy without asking the leader:
	// faster, answers without a majority, but may be behind.
	Serializable bool `json:"serializable,omitempty"`
	KeysOnly     bool `json:"keys_only,omitempty"`
	CountOnly    bool `json:"count_only,omitempty"`
}

// RangeResponse: More is true when Limit cut the answer short; Count is the
// number of keys in the range.
type RangeResponse struct {
	Header Header     `json:"header"`
	KVs    []KeyValue `json:"kvs"`
	More   bool       `json:"more"`
	Count  int64      `json:"-"`
}

func (r *RangeResponse) UnmarshalJSON(b []byte) error {
	type plain RangeResponse // without this method
	var w struct {
		*plain
		Count num `json:"count"`
	}
	w.plain = (*plain)(r)
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	r.Count = int64(w.Count)
	return nil
}

// PutRequest writes one key. Lease attaches it to a lease (0: none): the
// key is deleted when the lease expires or is revoked.
type PutRequest struct {
	Key    []byte `json:"key"`
	Value  []byte `json:"value"`
	Lease  int64  `json:"lease,string,omitempty"`
	PrevKV bool   `json:"prev_kv,omitempty"`
}

// PutResponse carries the key as it was before, when PrevKV was asked and
// the key existed.
type PutResponse struct {
	Header Header    `json:"header"`
	PrevKV *KeyValue `json:"prev_kv"`
}

// DeleteRangeRequest deletes one key, or [Key, RangeEnd).
type DeleteRangeRequest struct {
	Key      []byte `json:"key"`
	RangeEnd []byte `json:"range_end,omitempty"`
	PrevKV   bool   `json:"prev_kv,omitempty"`
}

// DeleteRangeResponse: Deleted counts the keys deleted.
type DeleteRangeResponse struct {
	Header  Header     `json:"header"`
	Deleted int64      `json:"-"`
	PrevKVs []KeyValue `json:"prev_kvs"`
}

func (r *DeleteRangeResponse) UnmarshalJSON(b []byte) error {
	type plain DeleteRangeResponse
	var w struct {
		*plain
		Deleted num `json:"deleted"`
	}
	w.plain = (*plain)(r)
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	r.Deleted = int64(w.Deleted)
	return nil
}

// Range reads keys. It is safe to retry and moves on to the next endpoint on
// failure.
func (c *Client) Range(ctx context.Context, r RangeRequest) (*RangeResponse, error) {
	var out RangeResponse
	if err := c.call(ctx, "/v3/kv/range", r, &out, false); err != nil {
		return nil, err
	}
	return &out, nil
}

// Put writes a key. On ErrMaybeApplied it was sent once and not repeated.
func (c *Client) Put(ctx context.Context, r PutRequest) (*PutResponse, error) {
	var out PutResponse
	if err := c.call(ctx, "/v3/kv/put", r, &out, true); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteRange deletes keys. On ErrMaybeApplied it was sent once and not
// repeated.
func (c *Client) DeleteRange(ctx context.Context, r DeleteRangeRequest) (*DeleteRangeResponse, error) {
	var out DeleteRangeResponse
	if err := c.call(ctx, "/v3/kv/deleterange", r, &out, true); err != nil {
		return nil, err
	}
	return &out, nil
}

// Compact discards the history before revision (keys' current values stay).
// Watches and reads from older revisions then fail with ErrCompacted.
// Physical waits until the space is reclaimed in the backend.
func (c *Client) Compact(ctx context.Context, revision int64, physical bool) (*Header, error) {
	in := struct {
		Revision int64 `json:"revision,string"`
		Physical bool  `json:"physical,omitempty"`
	}{revision, physical}
	var out struct {
		Header Header `json:"header"`
	}
	if err := c.call(ctx, "/v3/kv/compaction", in, &out, true); err != nil {
		return nil, err
	}
	return &out.Header, nil
}
