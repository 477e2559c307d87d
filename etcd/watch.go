package etcd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// WatchRequest asks for the changes to one key, or to [Key, RangeEnd).
type WatchRequest struct {
	Key      []byte `json:"key"`
	RangeEnd []byte `json:"range_end,omitempty"`
	// StartRevision is the first revision to report (0: from now). Events
	// from an older, compacted revision cannot be had: ErrCompacted.
	StartRevision int64 `json:"start_revision,string,omitempty"`
	PrevKV        bool  `json:"prev_kv,omitempty"`
	// ProgressNotify asks etcd for an empty response now and then (every
	// 10 minutes by default) that carries the revision reached.
	ProgressNotify bool `json:"progress_notify,omitempty"`
}

// EventType is what happened to a key.
type EventType int

const (
	EventPut EventType = iota
	EventDelete
)

func (t EventType) String() string {
	if t == EventDelete {
		return "DELETE"
	}
	return "PUT"
}

// Event is one change. For a DELETE, KV holds the key and the revision of
// the deletion; PrevKV (when asked for) the value before the change.
type Event struct {
	Type   EventType
	KV     KeyValue
	PrevKV *KeyValue
}

func (e *Event) UnmarshalJSON(b []byte) error {
	var w struct {
		Type   json.RawMessage `json:"type"` // "PUT" is left out as the zero value
		KV     KeyValue        `json:"kv"`
		PrevKV *KeyValue       `json:"prev_kv"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	switch strings.Trim(string(w.Type), `"`) {
	case "", "PUT", "0", "null":
		e.Type = EventPut
	case "DELETE", "1":
		e.Type = EventDelete
	default:
		return fmt.Errorf("etcd: unknown event type %s", w.Type)
	}
	e.KV, e.PrevKV = w.KV, w.PrevKV
	return nil
}

// WatchResponse is one batch of events in revision order. A response with
// no events is a progress notification: nothing changed up to
// Header.Revision.
type WatchResponse struct {
	Header Header
	Events []Event
}

// wireWatch is a WatchResponse as the gateway sends it.
type wireWatch struct {
	Header          Header  `json:"header"`
	Created         bool    `json:"created"`
	Canceled        bool    `json:"canceled"`
	CompactRevision num     `json:"compact_revision"`
	CancelReason    string  `json:"cancel_reason"`
	Events          []Event `json:"events"`
}

// ErrWatchClosed is what Next returns after Close.
var ErrWatchClosed = errors.New("etcd: watcher closed")

// Watcher reads one watch stream. Its methods are not for concurrent use,
// except Close.
type Watcher struct {
	c        *Client
	endpoint string
	idx      int
	dec      *json.Decoder
	cancel   context.CancelFunc
	closed   atomic.Bool
	next     int64
	err      error
	once     sync.Once
}

// Watch opens a watch stream on the first endpoint that takes it and
// returns once etcd has confirmed it is created (within the per-request
// timeout per endpoint). The stream lives until ctx ends, Close, or a
// failure that Next reports.
//
// The watch asks the member to require a leader (gRPC metadata
// "hasleader", as etcd's own client does), so a member cut off from the
// majority ends the stream instead of going quiet: Next then returns
// ErrWatchBroken together with ErrNoLeader.
func (c *Client) Watch(ctx context.Context, r WatchRequest) (*Watcher, error) {
	body, err := json.Marshal(struct {
		CreateRequest WatchRequest `json:"create_request"`
	}{r})
	if err != nil {
		return nil, err
	}
	tok, err := c.authToken(ctx)
	if err != nil {
		return nil, err
	}
	w, err := c.watchRotate(ctx, body, tok)
	var e *Error
	if errors.As(err, &e) && e.is(errTokenRefused) && c.user != "" {
		if tok, err = c.renew(ctx, tok); err != nil {
			return nil, err
		}
		w, err = c.watchRotate(ctx, body, tok)
	}
	if errors.As(err, &e) && e.is(errTokenRefused) {
		e.Kinds = []error{ErrAuth}
	}
	if err != nil {
		return nil, err
	}
	if r.StartRevision > 0 {
		w.next = r.StartRevision
	}
	return w, nil
}

func (c *Client) watchRotate(ctx context.Context, body []byte, tok string) (*Watcher, error) {
	n := len(c.eps)
	start := int(c.cur.Load())
	var last error
	for i := 0; i < n; i++ {
		idx := (start + i) % n
		w, err := c.watchOnce(ctx, idx, body, tok)
		if err == nil {
			return w, nil
		}
		var e *Error
		if !errors.As(err, &e) || !e.is(ErrUnavailable) {
			return nil, err
		}
		c.cur.CompareAndSwap(int64(idx), int64((idx+1)%n))
		if ctx.Err() != nil {
			return nil, err
		}
		last = err
	}
	return nil, last
}

func (c *Client) watchOnce(ctx context.Context, idx int, body []byte, tok string) (*Watcher, error) {
	ep := c.eps[idx]
	wctx, cancel := context.WithCancel(ctx)
	var timedOut atomic.Bool
	timer := time.AfterFunc(c.timeout, func() { timedOut.Store(true); cancel() })
	fail := func(err error) (*Watcher, error) {
		timer.Stop()
		cancel()
		e := &Error{Endpoint: ep.url, Err: err, Kinds: []error{ErrUnavailable}}
		if timedOut.Load() {
			e.Kinds = append(e.Kinds, ErrTimeout)
		}
		return nil, e
	}
	req, err := http.NewRequestWithContext(wctx, http.MethodPost, ep.url+"/v3/watch", bytes.NewReader(body))
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Grpc-Metadata-hasleader", "true")
	if tok != "" {
		req.Header.Set("Authorization", tok)
	}
	resp, err := ep.hc.Do(req)
	if err != nil {
		return fail(err)
	}
	if resp.StatusCode != http.StatusOK {
		var data bytes.Buffer
		_, _ = data.ReadFrom(resp.Body)
		resp.Body.Close()
		timer.Stop()
		cancel()
		return nil, answerError(ep.url, resp.StatusCode, data.Bytes(), false)
	}
	w := &Watcher{c: c, endpoint: ep.url, idx: idx, dec: json.NewDecoder(resp.Body), cancel: func() {
		cancel()
		resp.Body.Close()
	}}
	first, err := w.read()
	if err != nil {
		timer.Stop()
		w.cancel()
		var e *Error
		if errors.As(err, &e) && e.is(ErrWatchBroken) && e.Message != "" {
			// etcd refused the watch. With auth on, a refused token shows
			// here as "permission denied", as the stream checks the token
			// when it creates the watch.
			if strings.Contains(e.Message, "permission denied") && c.user != "" {
				e.Kinds = []error{errTokenRefused}
			} else {
				e.Kinds = classify(ep.url, e.Code, e.Message, false).Kinds
			}
			return nil, e
		}
		return fail(err)
	}
	if !timer.Stop() {
		w.cancel()
		return fail(context.DeadlineExceeded)
	}
	if !first.Created {
		w.cancel()
		return nil, &Error{Endpoint: ep.url, Message: "watch stream did not start with its creation"}
	}
	// A watch from "now" reports every change after the revision etcd
	// created it at.
	w.next = first.Header.Revision + 1
	return w, nil
}

// read decodes the next response and turns a cancelled watch into an error.
func (w *Watcher) read() (*wireWatch, error) {
	var m struct {
		Result *wireWatch   `json:"result"`
		Error  *streamError `json:"error"`
	}
	if err := w.dec.Decode(&m); err != nil {
		if w.closed.Load() {
			return nil, ErrWatchClosed
		}
		return nil, &Error{Endpoint: w.endpoint, Err: err, Kinds: []error{ErrWatchBroken}}
	}
	if m.Error != nil {
		e := classify(w.endpoint, m.Error.GRPCCode, m.Error.Message, false)
		e.Kinds = append(e.Kinds, ErrWatchBroken)
		return nil, e
	}
	r := m.Result
	if r == nil {
		return nil, &Error{Endpoint: w.endpoint, Message: "watch stream sent neither result nor error", Kinds: []error{ErrWatchBroken}}
	}
	if r.Canceled {
		if r.CompactRevision > 0 {
			return nil, &CompactedError{Revision: int64(r.CompactRevision)}
		}
		e := classify(w.endpoint, 0, r.CancelReason, false)
		if e.Message == "" {
			e.Message = "watch canceled"
		}
		e.Kinds = append(e.Kinds, ErrWatchBroken)
		return nil, e
	}
	return r, nil
}

// Next blocks until the next batch of events (or progress notification)
// and returns it. Its errors are final for this watcher:
//   - a *CompactedError (ErrCompacted): the start revision was compacted;
//     the caller must read the current state afresh and watch from there;
//   - ErrWatchBroken: the stream ended (the member died or lost its
//     leader, the connection broke); watch again from NextRevision, which
//     misses nothing if that revision is not compacted meanwhile;
//   - ErrWatchClosed after Close, or the context's error.
func (w *Watcher) Next() (*WatchResponse, error) {
	if w.err != nil {
		return nil, w.err
	}
	r, err := w.read()
	if err != nil {
		w.err = err
		if errors.Is(err, ErrWatchBroken) {
			// The next request starts on another member.
			n := len(w.c.eps)
			w.c.cur.CompareAndSwap(int64(w.idx), int64((w.idx+1)%n))
		}
		w.Close()
		return nil, err
	}
	if len(r.Events) > 0 {
		w.next = r.Events[len(r.Events)-1].KV.ModRevision + 1
	} else if !r.Created && r.Header.Revision >= w.next {
		// A progress notification is sent only once the watcher has
		// caught up, so every event up to its revision was delivered.
		w.next = r.Header.Revision + 1
	}
	return &WatchResponse{Header: r.Header, Events: r.Events}, nil
}

// NextRevision is the revision to watch from to continue where this
// watcher stopped: one past the last event (or progress notification)
// delivered, or else the start revision (for a watch from "now", one past
// the revision it was created at).
func (w *Watcher) NextRevision() int64 { return w.next }

// Endpoint is the member serving this watch.
func (w *Watcher) Endpoint() string { return w.endpoint }

// Close ends the stream. Safe to call more than once and from another
// goroutine than the one in Next.
func (w *Watcher) Close() {
	w.once.Do(func() {
		w.closed.Store(true)
		w.cancel()
	})
}
