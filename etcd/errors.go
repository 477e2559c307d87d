package etcd

import (
	"errors"
	"fmt"
	"strings"
)

// The kinds of failure a caller decides on. An error returned by the client
// matches one or more of them with errors.Is; it is never one of them itself,
// so its text keeps the cause (the endpoint and etcd's message).
var (
	// ErrUnavailable: no endpoint answered (connection refused, timed out,
	// or etcd said it cannot serve now, for example with no leader). A read
	// has tried every endpoint; a write got this only when it was certainly
	// not applied (it was refused before it reached raft).
	ErrUnavailable = errors.New("etcd: unavailable")
	// ErrMaybeApplied: a write was sent and no answer came back (timeout,
	// broken connection, or etcd's own "request timed out"). It may or may
	// not have been applied; the client does not send it again. A caller
	// whose write is guarded by a compare (a Txn on a revision) may retry it;
	// a blind put or a lease grant should be checked by reading first.
	ErrMaybeApplied = errors.New("etcd: write may have been applied")
	// ErrTimeout: the per-request timeout passed with no answer. Always
	// together with ErrUnavailable (a read) or ErrMaybeApplied (a write).
	ErrTimeout = errors.New("etcd: request timed out")
	// ErrNoLeader: the member has no leader (the cluster lost its majority,
	// or an election is under way). Together with ErrUnavailable.
	ErrNoLeader = errors.New("etcd: no leader")
	// ErrAuth: the user name or password is wrong, or a token was refused
	// again right after it was renewed.
	ErrAuth = errors.New("etcd: authentication failed")
	// ErrPermissionDenied: the user is known but its roles do not cover the
	// key range.
	ErrPermissionDenied = errors.New("etcd: permission denied")
	// ErrCompacted: the revision asked for was compacted away. A watcher
	// returns a *CompactedError that carries the compact revision.
	ErrCompacted = errors.New("etcd: revision compacted")
	// ErrFutureRevision: a read asked for a revision that does not exist yet.
	ErrFutureRevision = errors.New("etcd: future revision")
	// ErrLeaseNotFound: the lease expired or was revoked.
	ErrLeaseNotFound = errors.New("etcd: lease not found")
	// ErrWatchBroken: a watch stream ended (the member died, its connection
	// broke, or etcd cancelled the watch). Events after the last one
	// delivered may have been missed: empty caches and watch again from
	// Watcher.NextRevision.
	ErrWatchBroken = errors.New("etcd: watch broken")
)

// Error is a failure with its cause: etcd's gRPC code and message when etcd
// answered, else the transport error. Kinds lists the sentinels above it
// matches.
type Error struct {
	Endpoint string
	// Code is the gRPC status code etcd answered with (14 unavailable, 16
	// unauthenticated...), 0 when no answer came.
	Code    int
	Message string
	Kinds   []error
	Err     error // the transport error, if any
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("etcd")
	if e.Endpoint != "" {
		b.WriteString(" ")
		b.WriteString(e.Endpoint)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s (code %d)", e.Message, e.Code)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	var kinds []string
	for _, k := range e.Kinds {
		if k != errTokenRefused {
			kinds = append(kinds, strings.TrimPrefix(k.Error(), "etcd: "))
		}
	}
	if len(kinds) > 0 {
		fmt.Fprintf(&b, " [%s]", strings.Join(kinds, ", "))
	}
	return b.String()
}

// Unwrap gives the kinds and the transport error to errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return e.Kinds
	}
	return append(append([]error(nil), e.Kinds...), e.Err)
}

func (e *Error) is(kind error) bool {
	for _, k := range e.Kinds {
		if k == kind {
			return true
		}
	}
	return false
}

// CompactedError is returned when a watch or a read needed a revision that
// was compacted. Revision is the compact revision: the oldest still kept.
type CompactedError struct {
	Revision int64
}

func (e *CompactedError) Error() string {
	return fmt.Sprintf("etcd: required revision has been compacted (compact revision %d)", e.Revision)
}

// Is makes errors.Is(err, ErrCompacted) true.
func (e *CompactedError) Is(target error) bool { return target == ErrCompacted }

// gRPC status codes etcd answers with (google.golang.org/grpc/codes).
const (
	codeInvalidArgument  = 3
	codeDeadlineExceeded = 4
	codeNotFound         = 5
	codePermissionDenied = 7
	codeOutOfRange       = 11
	codeUnavailable      = 14
	codeUnauthenticated  = 16
)

// classify turns etcd's JSON error ({"error":..., "code":N, "message":...})
// into an *Error with its kinds. Messages are etcd's own (etcdserver/api/
// v3rpc/rpctypes), stable since 3.0.
func classify(endpoint string, code int, msg string, write bool) *Error {
	e := &Error{Endpoint: endpoint, Code: code, Message: msg}
	switch {
	case strings.Contains(msg, "no leader"):
		// Refused before raft: not applied.
		e.Kinds = []error{ErrUnavailable, ErrNoLeader}
	case strings.Contains(msg, "too many requests"), strings.Contains(msg, "proposal dropped"),
		strings.Contains(msg, "not capable"), strings.Contains(msg, "unhealthy cluster"):
		// Also refused before raft (or dropped by it): not applied.
		e.Kinds = []error{ErrUnavailable}
	case strings.Contains(msg, "request timed out"), code == codeDeadlineExceeded:
		// etcd proposed the request to raft and did not see it applied in
		// time: it may still be.
		e.Kinds = unanswered(write, ErrTimeout)
	case code == codeUnavailable, strings.Contains(msg, "server stopped"), strings.Contains(msg, "request cancelled"):
		// Any other failure of a member to serve (stopping while the
		// request waited for raft, the gateway's own connection to the
		// member breaking): a write may have gone through.
		e.Kinds = unanswered(write)
	case strings.Contains(msg, "invalid auth token"), strings.Contains(msg, "revision in header is old"),
		strings.Contains(msg, "invalid auth management"), strings.Contains(msg, "user name is empty"),
		code == codeUnauthenticated:
		// "user name is empty": a request without a token, as when auth
		// was enabled after this client found it off.
		e.Kinds = []error{errTokenRefused}
	case strings.Contains(msg, "authentication failed"), strings.Contains(msg, "user name not found"):
		e.Kinds = []error{ErrAuth}
	case code == codePermissionDenied, strings.Contains(msg, "permission denied"):
		e.Kinds = []error{ErrPermissionDenied}
	case strings.Contains(msg, "compacted"):
		e.Kinds = []error{ErrCompacted}
	case strings.Contains(msg, "future revision"):
		e.Kinds = []error{ErrFutureRevision}
	case strings.Contains(msg, "lease not found"), code == codeNotFound && strings.Contains(msg, "lease"):
		e.Kinds = []error{ErrLeaseNotFound}
	}
	return e
}

// unanswered gives the kinds of a request that got no definite answer: a
// read may go to another member, a write may have been applied.
func unanswered(write bool, more ...error) []error {
	if write {
		return append([]error{ErrMaybeApplied}, more...)
	}
	return append([]error{ErrUnavailable}, more...)
}

// errTokenRefused is internal: the client renews its token once and sends
// the request again; a second refusal is reported as ErrAuth.
var errTokenRefused = errors.New("etcd: auth token refused")
