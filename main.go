// Command vmsauth is the login and token service of an NVR/VMS box: one
// binary that serves the client, admin and integration login APIs from an
// embedded bbolt database. main parses the command line and wires the parts;
// the rules live in auth, storage in store, HTTP in web.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"vmsauth/auth"
	"vmsauth/store"
	"vmsauth/web"
)

// version is set at release build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `vmsauth - login and token service for NVR/VMS boxes

Usage:
  vmsauth serve [flags]            run the service (vmsauth serve -h for flags)
  vmsauth serve --print-config     show the effective configuration
  vmsauth user add --login L [--name N] [--api client,admin,integration]
                   [--permissions p,q|all] [--sessions-limit N] [--password-hash H]
                                   create a user (password on stdin, or generated)
  vmsauth user list                list users
  vmsauth user show LOGIN          show one user
  vmsauth user passwd LOGIN        set a password (stdin, or generated); ends sessions
  vmsauth user disable LOGIN       disable an account; ends sessions
  vmsauth user enable LOGIN        enable an account
  vmsauth user delete LOGIN        delete an account
  vmsauth user grant LOGIN PERM... grant permissions (or "all")
  vmsauth user revoke LOGIN PERM.. revoke permissions (or "all")
  vmsauth backup FILE              write a checked copy of the live database
  vmsauth restore FILE             replace the database with a backup (service stopped)
  vmsauth audit [--login L] [--since T] [--limit N]
                                   show login attempts, newest first
  vmsauth install [serve flags]    register the system service (data in /var/lib/vmsauth)
  vmsauth uninstall | start | stop | restart | status
                                   manage the system service
  vmsauth version                  print the version

Every user, backup, restore and audit command takes --data DIR (default
./data, or $VMSAUTH_DATA), and works whether or not the service is running.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr))
}

// exitDamaged is the exit status of a command refused or stopped because
// the database is damaged: a restart cannot help, so a service manager can
// be told not to (systemd: RestartPreventExitStatus=3).
const exitDamaged = 3

// errUsage marks a command line mistake; its message was already printed.
var errUsage = errors.New("usage")

// run executes one command and returns the process exit code. ctx ends a
// running server; getenv is injectable so tests need not touch the
// process environment.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(ctx, args[1:], getenv, stdout, stderr)
	case "user":
		err = userCommand(ctx, args[1:], getenv, stdin, stdout, stderr)
	case "backup":
		err = backupCommand(ctx, args[1:], getenv, stdout, stderr)
	case "restore":
		err = restoreCommand(args[1:], getenv, stdout, stderr)
	case "audit":
		err = auditCommand(ctx, args[1:], getenv, stdin, stdout, stderr)
	case "install", "uninstall", "start", "stop", "restart", "status":
		err = serviceCommand(args[0], args[1:], getenv, stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "vmsauth %s (%s, %s/%s)\n", buildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "vmsauth: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	var code exitCode
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		return 2
	case errors.As(err, &code):
		return int(code)
	case errors.Is(err, store.ErrDamaged):
		fmt.Fprintf(stderr, "vmsauth: %v\n", err)
		return exitDamaged
	default:
		var verr *auth.ValidationError
		if errors.As(err, &verr) {
			for _, f := range verr.Fields {
				fmt.Fprintf(stderr, "vmsauth: %s\n", web.FieldMessage("en", f))
			}
			return 1
		}
		fmt.Fprintf(stderr, "vmsauth: %v\n", err)
		return 1
	}
}

func buildVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}
