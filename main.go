// Command vmsauth is the login and token service of an NVR/VMS box: one
// binary that serves the client, admin and integration login APIs from an
// embedded bbolt database. The command line lives in package cli; main only
// turns SIGINT and SIGTERM into the end of a context and exits with the
// command's status.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"vmsauth/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(cli.Main(ctx, os.Args[1:], cli.Env{Getenv: os.Getenv, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}))
}
