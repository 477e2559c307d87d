package etcd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// The gateway writes int64 and uint64 fields as JSON strings (proto3's JSON
// mapping) and leaves out every field at its zero value. num and unum read
// either a string or a bare number, so a gateway that writes numbers (or a
// test server) is read the same. Requests are written with `,string` tags.
type num int64

func (n *num) UnmarshalJSON(b []byte) error {
	v, err := strconv.ParseInt(string(unquote(b)), 10, 64)
	if err != nil {
		return fmt.Errorf("etcd: bad integer %s", b)
	}
	*n = num(v)
	return nil
}

type unum uint64

func (n *unum) UnmarshalJSON(b []byte) error {
	v, err := strconv.ParseUint(string(unquote(b)), 10, 64)
	if err != nil {
		return fmt.Errorf("etcd: bad integer %s", b)
	}
	*n = unum(v)
	return nil
}

func unquote(b []byte) []byte {
	if bytes.Equal(b, []byte("null")) {
		return []byte("0")
	}
	if len(b) >= 2 && b[0] == '"' && b[len(b)-1] == '"' {
		return b[1 : len(b)-1]
	}
	return b
}

// Header is the response header every answer carries. Revision is the
// store's revision when the request was served: a read at Revision sees
// exactly the writes up to it.
type Header struct {
	ClusterID uint64
	MemberID  uint64
	Revision  int64
	RaftTerm  uint64
}

func (h *Header) UnmarshalJSON(b []byte) error {
	var w struct {
		ClusterID unum `json:"cluster_id"`
		MemberID  unum `json:"member_id"`
		Revision  num  `json:"revision"`
		RaftTerm  unum `json:"raft_term"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*h = Header{uint64(w.ClusterID), uint64(w.MemberID), int64(w.Revision), uint64(w.RaftTerm)}
	return nil
}

// KeyValue is one key as stored. Version counts the puts since the key was
// created (0 for a deleted key in a DELETE event); Lease is 0 for none.
type KeyValue struct {
	Key            []byte
	Value          []byte
	CreateRevision int64
	ModRevision    int64
	Version        int64
	Lease          int64
}

func (kv *KeyValue) UnmarshalJSON(b []byte) error {
	var w struct {
		Key            []byte `json:"key"`
		Value          []byte `json:"value"`
		CreateRevision num    `json:"create_revision"`
		ModRevision    num    `json:"mod_revision"`
		Version        num    `json:"version"`
		Lease          num    `json:"lease"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*kv = KeyValue{w.Key, w.Value, int64(w.CreateRevision), int64(w.ModRevision), int64(w.Version), int64(w.Lease)}
	return nil
}
