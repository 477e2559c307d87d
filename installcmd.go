package main

import (
	"errors"
	"io"
)

// serviceCommand manages the system service.
func serviceCommand(action string, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return errors.New(action + ": not available yet")
}
