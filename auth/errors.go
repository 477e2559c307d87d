package auth

import (
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
)

// The error kinds of the domain. Each API's error writer in web turns them
// into that API's envelope; none of their text reaches a client.
var (
	ErrBadCredentials  = errors.New("auth: login or password is wrong")
	ErrAccountDisabled = errors.New("auth: account is disabled")
	ErrAccountExpired  = errors.New("auth: account has expired")
	ErrNoAccess        = errors.New("auth: account may not use this API")
	ErrForbidden       = errors.New("auth: permission denied")

	ErrUserNotFound    = errors.New("auth: user not found")
	ErrLoginTaken      = errors.New("auth: login is taken")
	ErrSessionNotFound = errors.New("auth: session not found")

	ErrTokenMissing  = errors.New("auth: token missing")
	ErrTokenInvalid  = errors.New("auth: token invalid")
	ErrTokenExpired  = errors.New("auth: token expired")
	ErrRefreshReused = errors.New("auth: refresh token reused; its chain is ended")

	// What a Store's Health reports, for /healthz to name without telling
	// a client more: the file is damaged (nothing more can be trusted of
	// it), the last write failed (a full disk, say) and none has succeeded
	// since, or the check of the file that follows a start has not finished.
	ErrStoreDamaged     = errors.New("damaged")
	ErrStoreWriteFailed = errors.New("the last database write failed")
	ErrStoreChecking    = errors.New("the database check has not finished")

	// ErrUnavailable is a store that cannot answer now: an etcd site with
	// no majority, or none of its members reachable. It is an outage, not a
	// bug: web answers 503 in each API's envelope, so that clients retry
	// later, and the store returns it within its request timeouts instead
	// of hanging.
	ErrUnavailable = errors.New("auth: the store is unavailable")
)

// PanicError is a panic recovered in a goroutine that must not take the
// process down with it, with where it happened: the goroutine's owner
// decides what to do about it (serve stops cleanly).
type PanicError struct {
	Value any
	Stack string // the panicking goroutine's stack, for the log
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// Recovered makes a PanicError of a recovered value, with the stack from
// the panic down.
func Recovered(v any) *PanicError {
	stack := string(debug.Stack())
	if i := strings.Index(stack, "\npanic("); i >= 0 {
		stack = stack[i+1:]
	}
	return &PanicError{Value: v, Stack: stack}
}

// SessionLimitError is returned when a client login would exceed the user's
// session limit. It lists the live sessions so the client can offer to end
// one (seed 000's 419 answer).
type SessionLimitError struct {
	Limit    int
	Sessions []*Session
}

func (e *SessionLimitError) Error() string {
	return fmt.Sprintf("auth: session limit of %d reached", e.Limit)
}

// FieldError is one problem with one input field. Code is a stable rule name
// ("required", "string", "min", "max" for lengths, "min_value", "max_value"
// for numbers, "unique", "in", "date", "integer"...)
// that web translates; Param is the rule's argument, if any.
type FieldError struct {
	Field string
	Code  string
	Param string
}

func (e FieldError) Error() string {
	if e.Param != "" {
		return fmt.Sprintf("%s: %s %s", e.Field, e.Code, e.Param)
	}
	return fmt.Sprintf("%s: %s", e.Field, e.Code)
}

// ValidationError collects field problems, in the order found.
type ValidationError struct {
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Error()
	}
	return "invalid input: " + strings.Join(parts, "; ")
}

// Add records a problem with a field.
func (e *ValidationError) Add(field, code, param string) {
	e.Fields = append(e.Fields, FieldError{Field: field, Code: code, Param: param})
}

// Err returns e if it holds any problem, else nil.
func (e *ValidationError) Err() error {
	if len(e.Fields) == 0 {
		return nil
	}
	return e
}
