// Package cli is vmsauth's command line: it parses the commands and wires
// the parts for them; the rules live in auth, storage in store, HTTP in web.
// Package main only hands it the process's arguments, environment and
// streams.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"

	"vmsauth/auth"
	"vmsauth/store"
	"vmsauth/web"
)

// version is set at release build time with -ldflags "-X vmsauth/cli.version=...".
var version = "dev"

// Env is what a command gets from the process that runs it: the
// environment, the standard streams and, when the running service runs the
// command for its control socket, the service's open database. Tests fill
// it in instead of touching the process.
type Env struct {
	Getenv func(string) string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer

	// local is the running service's open database when the command runs
	// inside the service (control.go); nil: the command opens the data
	// directory itself.
	local *local
	// host is the system the service commands act on; the zero value is
	// this machine as it is.
	host serviceHost
}

// command is one entry of the command line. The table below is the only
// list of commands: the usage text, the dispatch and the control socket's
// allow-list are all read from it.
type command struct {
	// names are the command's name and its aliases.
	names []string
	// synopsis is the command's lines of the usage text; empty when an
	// earlier entry's lines cover it too (uninstall, start, ...).
	synopsis string
	run      func(ctx context.Context, env Env, args []string) error
	// socket says the running service may run the command for a caller
	// that cannot open the database it holds (see control.go).
	socket bool
}

// commands returns the table of commands. It is a function, not a
// variable, because commands print the usage text the table makes.
func commands() []command {
	service := func(action string) func(context.Context, Env, []string) error {
		return func(_ context.Context, env Env, args []string) error { return serviceCommand(env, action, args) }
	}
	return []command{
		{names: []string{"serve"}, run: serve, synopsis: `
  vmsauth serve [flags]            run the service (vmsauth serve -h for flags)
  vmsauth serve --print-config     show the effective configuration`},
		{names: []string{"user"}, socket: true, run: userCommand, synopsis: `
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
  vmsauth user revoke LOGIN PERM.. revoke permissions (or "all")`},
		{names: []string{"backup"}, run: backupCommand, synopsis: `
  vmsauth backup FILE              write a checked copy of the live database
                                   (on a site box: the site at one revision)`},
		{names: []string{"restore"}, run: restoreCommand, synopsis: `
  vmsauth restore FILE             replace the database with a backup (service stopped)`},
		{names: []string{"audit"}, socket: true, run: auditCommand, synopsis: `
  vmsauth audit [--login L] [--since T] [--limit N]
                                   show login attempts, newest first`},
		// The socket runs only `site status`: siteCommand refuses init there.
		{names: []string{"site"}, socket: true, run: siteCommand, synopsis: `
  vmsauth site init --etcd URLs [--etcd-* flags] [--from FILE]
                                   copy this box's users, sessions and audit (or a
                                   backup's) into an empty site prefix (service stopped)
  vmsauth site status [--etcd URLs ...]
                                   the site's members, leader, revision and this
                                   box's watch; exits 1 when the site has no leader`},
		{names: []string{"install"}, run: service("install"), synopsis: `
  vmsauth install [serve flags]    register the system service (data in /var/lib/vmsauth)`},
		{names: []string{"uninstall"}, run: service("uninstall"), synopsis: `
  vmsauth uninstall | start | stop | restart | status
                                   manage the system service`},
		{names: []string{"start"}, run: service("start")},
		{names: []string{"stop"}, run: service("stop")},
		{names: []string{"restart"}, run: service("restart")},
		{names: []string{"status"}, run: service("status")},
		{names: []string{"version", "--version", "-v"}, synopsis: `
  vmsauth version                  print the version`,
			run: func(_ context.Context, env Env, _ []string) error {
				fmt.Fprintf(env.Stdout, "vmsauth %s (%s, %s/%s)\n", buildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
				return nil
			}},
		{names: []string{"help", "-h", "--help"},
			run: func(_ context.Context, env Env, _ []string) error {
				fmt.Fprint(env.Stdout, usage())
				return nil
			}},
	}
}

// lookup finds the command called name.
func lookup(name string) (command, bool) {
	for _, c := range commands() {
		if slices.Contains(c.names, name) {
			return c, true
		}
	}
	return command{}, false
}

// usage is the usage text, made from the table of commands.
func usage() string {
	var b strings.Builder
	b.WriteString("vmsauth - login and token service for NVR/VMS boxes\n\nUsage:")
	for _, c := range commands() {
		b.WriteString(c.synopsis)
	}
	b.WriteString(`

Every user, backup, restore, audit and site command takes --data DIR (default
./data, or $VMSAUTH_DATA), and works whether or not the service is running.
`)
	return b.String()
}

// exitDamaged is the exit status of a command refused or stopped because
// the database is damaged: a restart cannot help, so a service manager can
// be told not to (systemd: RestartPreventExitStatus=3).
const exitDamaged = 3

// errUsage marks a command line mistake; its message was already printed.
var errUsage = errors.New("usage")

// Main runs the command in args and returns the process exit code. ctx
// ends a running server.
func Main(ctx context.Context, args []string, env Env) int {
	stderr := env.Stderr
	if len(args) == 0 {
		fmt.Fprint(stderr, usage())
		return 2
	}
	c, ok := lookup(args[0])
	if !ok {
		fmt.Fprintf(stderr, "vmsauth: unknown command %q\n\n%s", args[0], usage())
		return 2
	}
	err := c.run(ctx, env, args[1:])
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
