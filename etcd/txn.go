package etcd

import (
	"context"
	"encoding/json"
	"fmt"
)

// CompareResult is how a Compare relates the key's field to its operand.
type CompareResult string

const (
	Equal    CompareResult = "EQUAL"
	Greater  CompareResult = "GREATER"
	Less     CompareResult = "LESS"
	NotEqual CompareResult = "NOT_EQUAL"
)

// Compare is one condition of a Txn. Build it with CompareValue,
// CompareVersion, CompareCreateRevision or CompareModRevision; WithRange
// makes it hold for every key in [Key, RangeEnd) (a missing key has version
// and revisions 0).
type Compare struct {
	Key      []byte
	RangeEnd []byte
	Result   CompareResult
	target   string
	value    []byte
	number   int64
}

// CompareValue compares the key's value (a missing key fails every value
// compare).
func CompareValue(key []byte, r CompareResult, value []byte) Compare {
	return Compare{Key: key, Result: r, target: "VALUE", value: value}
}

// CompareVersion compares the key's version; version 0 means it does not
// exist, so CompareVersion(k, Equal, 0) is "k is absent".
func CompareVersion(key []byte, r CompareResult, version int64) Compare {
	return Compare{Key: key, Result: r, target: "VERSION", number: version}
}

// CompareCreateRevision compares the revision the key was created at.
func CompareCreateRevision(key []byte, r CompareResult, rev int64) Compare {
	return Compare{Key: key, Result: r, target: "CREATE", number: rev}
}

// CompareModRevision compares the revision the key was last written at.
// With a range, CompareModRevision(prefix, Less, R+1).WithRange(end) holds
// when no key in the range was written (or created) after revision R: the
// compare behind an exact limit without a lock. (A key deleted after R is
// not seen by it; a deletion only lowers a count.)
func CompareModRevision(key []byte, r CompareResult, rev int64) Compare {
	return Compare{Key: key, Result: r, target: "MOD", number: rev}
}

// WithRange returns the compare over [c.Key, end).
func (c Compare) WithRange(end []byte) Compare {
	c.RangeEnd = end
	return c
}

// WithPrefix returns the compare over every key starting with c.Key.
func (c Compare) WithPrefix() Compare {
	return c.WithRange(PrefixEnd(c.Key))
}

func (c Compare) MarshalJSON() ([]byte, error) {
	w := map[string]any{"key": c.Key, "target": c.target, "result": c.Result}
	if c.RangeEnd != nil {
		w["range_end"] = c.RangeEnd
	}
	switch c.target {
	case "VALUE":
		w["value"] = c.value
	case "VERSION":
		w["version"] = fmt.Sprint(c.number)
	case "CREATE":
		w["create_revision"] = fmt.Sprint(c.number)
	case "MOD":
		w["mod_revision"] = fmt.Sprint(c.number)
	default:
		return nil, fmt.Errorf("etcd: a Compare must be made by CompareValue, CompareVersion, CompareCreateRevision or CompareModRevision")
	}
	return json.Marshal(w)
}

// Op is one operation of a Txn: set exactly one field.
type Op struct {
	Range  *RangeRequest       `json:"request_range,omitempty"`
	Put    *PutRequest         `json:"request_put,omitempty"`
	Delete *DeleteRangeRequest `json:"request_delete_range,omitempty"`
}

// OpResponse answers the Op at the same place: one field is set.
type OpResponse struct {
	Range  *RangeResponse       `json:"response_range"`
	Put    *PutResponse         `json:"response_put"`
	Delete *DeleteRangeResponse `json:"response_delete_range"`
}

// TxnRequest runs Success when every compare holds, else Failure, at one
// revision. Keys written in one Txn must differ.
type TxnRequest struct {
	Compare []Compare `json:"compare,omitempty"`
	Success []Op      `json:"success,omitempty"`
	Failure []Op      `json:"failure,omitempty"`
}

// TxnResponse: Succeeded says which branch ran; Responses answer its ops.
type TxnResponse struct {
	Header    Header       `json:"header"`
	Succeeded bool         `json:"succeeded"`
	Responses []OpResponse `json:"responses"`
}

// Txn runs a transaction. A Txn that only reads is retried on another
// endpoint like Range; one that writes is sent once, and ErrMaybeApplied
// says it may have run: the caller retries only when its compares make a
// second run harmless (a compare on a revision read before, say).
func (c *Client) Txn(ctx context.Context, r TxnRequest) (*TxnResponse, error) {
	write := false
	for _, ops := range [][]Op{r.Success, r.Failure} {
		for _, op := range ops {
			if op.Range == nil {
				write = true
			}
		}
	}
	var out TxnResponse
	if err := c.call(ctx, "/v3/kv/txn", r, &out, write); err != nil {
		return nil, err
	}
	return &out, nil
}
