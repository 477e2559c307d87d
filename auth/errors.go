package auth

import (
	"errors"
	"fmt"
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
)

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
